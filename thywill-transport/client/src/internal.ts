// Types of the client's own state, not part of its API (build.mjs publishes no declarations
// of this module).

/** A parsed server frame: a JSON object with a string `t`; its other fields are unchecked. */
export interface Frame {
  t: string;
  [field: string]: any;
}

/** What the welcome frame said, while connected. */
export interface Session {
  connection: string | null;
  session: string | null;
  member: string | null;
  apps: string[];
}

/** A message kept until acknowledged: its id and its encoded frame. */
export interface Outgoing {
  id: number;
  text: string;
}

/** An RPC call waiting for its reply. */
export interface Pending {
  app: string;
  name: string;
  resolve: (result: unknown) => void;
  reject: (error: unknown) => void;
  timer: ReturnType<typeof setTimeout> | null;
}

/** The position of a stream and what waits in it (see `streams` in client.js). */
export interface StreamState {
  name: string;
  epoch: string;
  last: number;
  held: Map<number, Frame>;
  mismatch: boolean;
  timer: ReturnType<typeof setTimeout> | null;
  asks: number;
  lostPending: boolean;
  apps: Set<string> | null;
}
