// The Echo page of a front end with a build step: the client comes from the npm package
// `thywill-client` instead of the classic script the server serves.
import { ApplicationInterface, Thywill } from 'thywill-client';

// The package does not know where the server mounts thywill: name the endpoint.
Thywill.configure({ url: '/echo/ws' });

const echo = new ApplicationInterface('echo');
const status = document.getElementById('status');
const form = document.getElementById('sender');
const input = form.elements.namedItem('text');
const button = form.querySelector('button');
const echoed = document.getElementById('echoed');

function connected(up) {
  status.textContent = up ? 'Connected' : 'Disconnected';
  input.disabled = !up;
  button.disabled = !up;
}

echo.on('connected', () => connected(true));
echo.on('disconnected', () => connected(false));
echo.on('received', (message) => {
  const item = document.createElement('li');
  item.textContent = String(message.data);
  echoed.prepend(item);
});

form.addEventListener('submit', (event) => {
  event.preventDefault();
  if (input.value !== '') {
    echo.send(input.value);
    input.value = '';
  }
});
