// The compose file viewer/editor: open a stack's file, edit it, validate it with the
// daemon's compose loader, save it (validated first), and bring the stack up or down.
import { FormEvent, useEffect, useState } from "react";
import { api, seg, streamEvents } from "../api";
import { ErrorBox } from "../components";

interface FileBody {
  path: string;
  content: string;
}

function dirname(path: string): string {
  return path.slice(0, path.lastIndexOf("/")) || "/";
}

export function ComposePage({ path }: { path: string }) {
  const [target, setTarget] = useState(path);
  const [content, setContent] = useState("");
  const [saved, setSaved] = useState("");
  const [error, setError] = useState<string | null>(null);
  const [message, setMessage] = useState<string | null>(null);
  const [busy, setBusy] = useState<string | null>(null);
  const [events, setEvents] = useState("");

  useEffect(() => {
    if (!path) return;
    api<FileBody>("GET", `/v1/compose/file?path=${seg(path)}`)
      .then((f) => {
        setContent(f.content);
        setSaved(f.content);
      })
      .catch((err) => setError(err.message));
  }, [path]);

  async function act(label: string, work: () => Promise<string | void>) {
    setBusy(label);
    setError(null);
    setMessage(null);
    try {
      const done = await work();
      if (done) setMessage(done);
    } catch (err) {
      setError(err instanceof Error ? err.message : String(err));
    } finally {
      setBusy(null);
    }
  }

  const check = (dry: boolean) => async () => {
    const r = await api<{ project: { services?: Record<string, unknown> }; warnings: string[] }>(
      "PUT",
      "/v1/compose/file",
      { path, content, dry_run: dry },
    );
    if (!dry) setSaved(content);
    const services = Object.keys(r.project.services ?? {}).join(", ");
    const warn = r.warnings.length ? `; warnings: ${r.warnings.join("; ")}` : "";
    return `${dry ? "Valid" : "Saved"}: services ${services || "(none)"}${warn}`;
  };
  const run = (verb: "up" | "down") => async () => {
    setEvents("");
    await streamEvents("POST", `/v1/compose/${verb}`, { files: [path], working_dir: dirname(path) }, (e) =>
      setEvents((t) => t + [e.type, e.resource ?? e.service ?? "", e.status ?? e.message ?? ""].join(" ").trim() + "\n"),
    );
    return `${verb} finished`;
  };

  function open(e: FormEvent) {
    e.preventDefault();
    window.location.hash = `#/compose?path=${seg(target)}`;
  }

  return (
    <div className="page">
      <h2>Compose file</h2>
      <form className="row-form" onSubmit={open}>
        <input
          name="path"
          className="grow mono"
          placeholder="/absolute/path/to/compose.yaml"
          value={target}
          onChange={(e) => setTarget(e.target.value)}
        />
        <button type="submit">Open</button>
      </form>
      <ErrorBox error={error} />
      {message && <div className="ok">{message}</div>}
      {path && (
        <>
          <textarea
            name="compose"
            className="editor mono"
            spellCheck={false}
            value={content}
            onChange={(e) => setContent(e.target.value)}
          />
          <div className="actions">
            <button disabled={!!busy} onClick={() => act("validating", check(true))}>
              Validate
            </button>
            <button disabled={!!busy || content === saved} onClick={() => act("saving", check(false))}>
              Save
            </button>
            <button disabled={!!busy || content !== saved} onClick={() => act("up", run("up"))}>
              Up
            </button>
            <button disabled={!!busy} onClick={() => act("down", run("down"))}>
              Down
            </button>
            {busy && <span className="muted">{busy}…</span>}
            {content !== saved && <span className="muted">unsaved changes</span>}
          </div>
          {events && <pre className="terminal">{events}</pre>}
        </>
      )}
    </div>
  );
}
