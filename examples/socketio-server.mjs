// A small Socket.IO chat server (the npm `socket.io` package, installed by
// `scripts/setup.sh`) for examples/socketio-chat.json and server/tests/socketio.rs.
//
//   node examples/socketio-server.mjs [--port 3000] [--ping-interval 1000] [--ping-timeout 1000]
//
// Prints `{"port":N}` on its first stdout line once listening on 127.0.0.1 (port 0 =
// any free port). GET /counts answers what it saw, as JSON: connections, open,
// disconnects by reason ("ping timeout" = a client missed a heartbeat), events by
// name, acks sent, Engine.IO pings sent and pongs received, and packets received.
//
// The chat: `join {guest}` -> a `motd` push, then `welcome {guest, room}`;
// `chat {from, text}` with an ack -> a `typing` push to the sender, the ack
// `{ok, from, seq}`, then `chat {from, text, seq}` broadcast to everyone. The pushes
// before each answer are what a correlating `expect` must skip.
import http from 'node:http';
import { Server } from 'socket.io';

function arg(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 && i + 1 < process.argv.length ? Number(process.argv[i + 1]) : fallback;
}

const counts = {
  connections: 0,
  open: 0,
  disconnects: {},
  events: {},
  acks: 0,
  pings: 0,
  pongs: 0,
  packets_in: 0,
};
let seq = 0;

const httpServer = http.createServer((req, res) => {
  if (req.method === 'GET' && req.url === '/counts') {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify(counts));
    return;
  }
  res.writeHead(404);
  res.end();
});

const io = new Server(httpServer, {
  pingInterval: arg('ping-interval', 25000),
  pingTimeout: arg('ping-timeout', 20000),
  transports: ['websocket'],
  serveClient: false,
});

// Engine.IO level: heartbeats and every packet a client sent.
io.engine.on('connection', (raw) => {
  raw.on('packet', (p) => {
    counts.packets_in += 1;
    if (p.type === 'pong') counts.pongs += 1;
  });
  raw.on('packetCreate', (p) => {
    if (p.type === 'ping') counts.pings += 1;
  });
});

io.on('connection', (socket) => {
  counts.connections += 1;
  counts.open += 1;
  socket.onAny((name) => {
    counts.events[name] = (counts.events[name] || 0) + 1;
  });
  socket.on('join', (msg) => {
    socket.emit('motd', { text: 'be nice' });
    socket.emit('welcome', { guest: msg && msg.guest, room: 'lobby' });
  });
  socket.on('chat', (msg, ack) => {
    seq += 1;
    const from = msg && msg.from;
    socket.emit('typing', { from: 'server' });
    if (typeof ack === 'function') {
      counts.acks += 1;
      ack({ ok: true, from, seq });
    }
    io.emit('chat', { from, text: msg && msg.text, seq });
  });
  socket.on('disconnect', (reason) => {
    counts.open -= 1;
    counts.disconnects[reason] = (counts.disconnects[reason] || 0) + 1;
  });
});

httpServer.listen(arg('port', 0), '127.0.0.1', () => {
  console.log(JSON.stringify({ port: httpServer.address().port }));
});

for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => process.exit(0));
