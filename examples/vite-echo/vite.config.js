import { defineConfig } from 'vite';

// Where the Echo example runs (`cargo xtask run-example echo`).
const echo = process.env.THYWILL_ECHO || '127.0.0.1:10081';

// `vite build`: the page is meant to be served by the Echo node under /echo/vite/, sharing its
// origin (the WebSocket endpoint refuses other origins by default); Echo's browser test does
// that. `vite` (the dev server): the page runs on Vite's origin, and the proxy passes the
// socket on to Echo as if it came from Echo's own origin.
export default defineConfig({
  base: '/echo/vite/',
  server: {
    proxy: {
      '/echo/ws': {
        target: `ws://${echo}`,
        ws: true,
        changeOrigin: true,
        headers: { origin: `http://${echo}` },
      },
    },
  },
});
