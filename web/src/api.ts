// The daemon's HTTP API as the GUI uses it: JSON calls, NDJSON streams, text streams.
// Same origin as the page, so the token cookie (set by /ui/?token=...) goes along.

export class ApiError extends Error {
  constructor(
    public status: number,
    public code: string,
    message: string,
  ) {
    super(message);
  }
}

async function failure(res: Response): Promise<ApiError> {
  const text = await res.text();
  try {
    const body = JSON.parse(text);
    if (body?.error) return new ApiError(res.status, body.error.code, body.error.message);
  } catch {
    /* not JSON */
  }
  return new ApiError(res.status, "error", `HTTP ${res.status}: ${text.slice(0, 300)}`);
}

export async function api<T = unknown>(method: string, path: string, body?: unknown): Promise<T> {
  const res = await fetch(path, {
    method,
    headers: body === undefined ? {} : { "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: "same-origin",
  });
  if (!res.ok) throw await failure(res);
  if (res.status === 204) return undefined as T;
  const type = res.headers.get("content-type") ?? "";
  return (type.includes("json") ? res.json() : res.text()) as Promise<T>;
}

/** Read a streamed response chunk by chunk (text), until it ends or `signal` aborts. */
export async function streamText(
  path: string,
  onText: (text: string) => void,
  init: RequestInit = {},
): Promise<void> {
  const res = await fetch(path, { credentials: "same-origin", ...init });
  if (!res.ok) throw await failure(res);
  if (!res.body) return;
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    onText(decoder.decode(value, { stream: true }));
  }
}

export type StreamEvent = { type: string; [key: string]: unknown };

/** An NDJSON stream: one event per line. An `error` event is thrown as an ApiError. */
export async function streamEvents(
  method: string,
  path: string,
  body: unknown,
  onEvent: (event: StreamEvent) => void,
  signal?: AbortSignal,
): Promise<void> {
  let pending = "";
  const init: RequestInit = { method, signal };
  if (body !== undefined) {
    init.headers = { "content-type": "application/json" };
    init.body = JSON.stringify(body);
  }
  await streamText(
    path,
    (text) => {
      pending += text;
      const lines = pending.split("\n");
      pending = lines.pop() ?? "";
      for (const line of lines) {
        if (!line.trim()) continue;
        const event = JSON.parse(line) as StreamEvent;
        if (event.type === "error")
          throw new ApiError(500, String(event.code ?? "error"), String(event.message));
        onEvent(event);
      }
    },
    init,
  );
}

export function b64text(data: unknown): string {
  const bytes = Uint8Array.from(atob(String(data ?? "")), (c) => c.charCodeAt(0));
  return new TextDecoder().decode(bytes);
}

export const seg = encodeURIComponent;

// -- shapes the pages read (only the fields they use) ---------------------------------

export interface Machine {
  id: string;
  name: string;
  state: { kind: string; reason: string | null };
  config: { cpus: number; memory_mb: number; disk_mb: number; image: string; ports: unknown[] };
  runtime: { accel: string | null; boot_seconds: number | null; started_at: string | null };
  agent_ready: boolean;
  created_at: string;
}

export interface Metrics {
  state: string;
  pid: number | null;
  cpu_percent: number | null;
  rss_bytes: number | null;
  memory_limit_bytes: number;
  time: string;
}

export interface AppInstance {
  name: string;
  deploy_mode: string;
  status: string;
  status_message: string | null;
  version: string;
  description: string;
  docker_compose_path: string | null;
  stack: Record<string, unknown>;
}

export interface ContainerSummary {
  id: string;
  name: string;
  image: string;
  state: string;
  status: string;
  labels: Record<string, string>;
  project: string | null;
  service: string | null;
}

export interface ImageManifest {
  name: string;
}
