// Socket.IO 4.8 on Node.js, the Node peer of `cargo xtask bench echo` and `bench broadcast`
// (the same events as the socketioxide peer beside it):
// - event `echo`: the data is emitted back to the sender as `echo`;
// - event `draw`: the data is emitted as `draw` to every other socket of the room `draw`,
//   which every socket joins on connecting (thywill's Draw application does the same).
//
// Run as `node server.js [--port P]` (0, the default, picks a free port) with `socket.io`
// resolvable (the bench installs it with npm into its own directory and sets NODE_PATH);
// prints `listening: ws://ADDR/` on stdout once bound, then serves until killed. Configured as
// well as the others: WebSocket transport only, `TCP_NODELAY` on every socket (Node's default
// for HTTP servers), one process (Node's event loop is single-threaded).
"use strict";

const http = require("node:http");
const { Server } = require("socket.io");

const ROOM = "draw";

function port(args) {
  let port = 0;
  for (let i = 0; i < args.length; i++) {
    if (args[i] === "--port" && i + 1 < args.length) {
      port = Number.parseInt(args[++i], 10);
    } else {
      throw new Error(`unknown argument ${JSON.stringify(args[i])}`);
    }
  }
  return port;
}

const server = http.createServer();
server.on("connection", (socket) => socket.setNoDelay(true));
const io = new Server(server, { transports: ["websocket"], serveClient: false });
io.on("connection", (socket) => {
  socket.join(ROOM);
  socket.on("echo", (data) => socket.emit("echo", data));
  // `to` selects the room's sockets except this one.
  socket.on("draw", (data) => socket.to(ROOM).emit("draw", data));
});
server.listen(port(process.argv.slice(2)), "127.0.0.1", () => {
  const { address, port } = server.address();
  process.stdout.write(`listening: ws://${address}:${port}/\n`);
});
