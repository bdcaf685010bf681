// The console's shared state: one object that the other modules import and
// change. Nothing else is shared between them (nothing on window).

const DEFAULT_LIMIT = 4000; // until GET /api/v1/limits answers

export const state = {
  token: null,
  user: null,
  expiryTimer: null,
  socket: null, // the ChatSocket, made by boot() in console.js
  busy: false,
  pending: new Map(), // client frame id -> assistant bubble awaiting its reply
  turns: new Map(), // turn_id -> assistant bubble already shown
  running: null, // frame id of the websocket turn that Stop would stop
  asked: new WeakMap(), // assistant bubble -> the message it answers
  raw: new WeakMap(), // assistant bubble -> the reply text as sent (for Copy)
  memoryQuery: "",
  sessionId: null, // the open conversation
  conversations: [],
  historyItems: [],
  ratingsHeard: new Map(), // turn_id -> rating ("up", "down", null) heard since sign-in
  limit: DEFAULT_LIMIT,
};
