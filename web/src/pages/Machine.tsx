// One sandbox: its state and configuration, actions, CPU/memory charts (host-side
// figures of its QEMU process), the console log followed live, and a command box that
// runs `sh -c` in the guest and shows the output as it streams.
import { FormEvent, useEffect, useRef, useState } from "react";
import { api, b64text, Machine, Metrics, seg, streamEvents } from "../api";
import { Badge, bytes, Chart, ErrorBox, usePoll, when } from "../components";

const HISTORY = 60;

function useMetrics(name: string, running: boolean) {
  const [cpu, setCpu] = useState<number[]>([]);
  const [rss, setRss] = useState<number[]>([]);
  const [limit, setLimit] = useState(0);
  usePoll(
    async () => {
      if (!running) return null;
      const m = await api<Metrics>("GET", `/v1/machines/${seg(name)}/metrics?guest=false`);
      setLimit(m.memory_limit_bytes / (1 << 20));
      if (m.cpu_percent !== null) setCpu((v) => [...v, m.cpu_percent!].slice(-HISTORY));
      if (m.rss_bytes !== null) setRss((v) => [...v, m.rss_bytes! / (1 << 20)].slice(-HISTORY));
      return m;
    },
    2000,
    [name, running],
  );
  return { cpu, rss, limit };
}

function Logs({ name, running }: { name: string; running: boolean }) {
  const [text, setText] = useState("");
  const [error, setError] = useState<string | null>(null);
  const box = useRef<HTMLPreElement>(null);
  useEffect(() => {
    // Server-sent events: one per console line, then `end` (EventSource would otherwise
    // reconnect to a log that no longer grows).
    setText("");
    setError(null);
    const source = new EventSource(
      `/v1/machines/${seg(name)}/logs?tail=300&follow=${running}`,
    );
    source.onopen = () => setText(""); // a reconnect sends the tail again
    source.onmessage = (event) => setText((t) => (t + event.data + "\n").slice(-200_000));
    source.addEventListener("end", () => source.close());
    source.onerror = () => {
      if (source.readyState === EventSource.CLOSED) setError("the log stream was refused");
      else if (!running) source.close();
    };
    return () => source.close();
  }, [name, running]);
  useEffect(() => {
    if (box.current) box.current.scrollTop = box.current.scrollHeight;
  }, [text]);
  return (
    <>
      <ErrorBox error={error} />
      <pre className="terminal logs" data-testid="logs" ref={box}>
        {text || "(no output yet)"}
      </pre>
    </>
  );
}

interface Run {
  command: string;
  output: string;
  exit: string | null;
}

function Exec({ name, ready }: { name: string; ready: boolean }) {
  const [command, setCommand] = useState("");
  const [runs, setRuns] = useState<Run[]>([]);
  const [busy, setBusy] = useState(false);
  const box = useRef<HTMLDivElement>(null);

  async function run(e: FormEvent) {
    e.preventDefault();
    if (!command.trim()) return;
    const index = runs.length;
    const update = (f: (r: Run) => Run) =>
      setRuns((all) => all.map((r, i) => (i === index ? f(r) : r)));
    setRuns((all) => [...all, { command, output: "", exit: null }]);
    setCommand("");
    setBusy(true);
    try {
      await streamEvents(
        "POST",
        `/v1/machines/${seg(name)}/exec`,
        { argv: ["sh", "-c", command], timeout: 300 },
        (event) => {
          if (event.type === "stdout" || event.type === "stderr")
            update((r) => ({ ...r, output: r.output + b64text(event.data_b64) }));
          else if (event.type === "exit")
            update((r) => ({
              ...r,
              exit:
                event.signal != null
                  ? `signal ${event.signal}`
                  : event.timed_out
                    ? "timed out"
                    : `exit ${event.exit_code}`,
            }));
        },
      );
    } catch (err) {
      update((r) => ({ ...r, exit: `error: ${err instanceof Error ? err.message : err}` }));
    } finally {
      setBusy(false);
    }
  }

  useEffect(() => {
    if (box.current) box.current.scrollTop = box.current.scrollHeight;
  }, [runs]);

  return (
    <div className="shell">
      <div className="terminal" data-testid="exec-output" ref={box}>
        {runs.map((r, i) => (
          <div key={i} className="run">
            <div className="prompt">$ {r.command}</div>
            <pre>{r.output}</pre>
            {r.exit && <div className={r.exit === "exit 0" ? "muted" : "bad"}>[{r.exit}]</div>}
          </div>
        ))}
      </div>
      <form onSubmit={run} className="row-form">
        <input
          name="command"
          className="grow mono"
          placeholder={ready ? "a shell command, e.g. uname -a" : "the guest agent is not ready"}
          value={command}
          onChange={(e) => setCommand(e.target.value)}
          disabled={!ready}
        />
        <button type="submit" disabled={!ready || busy}>
          {busy ? "Running…" : "Run"}
        </button>
      </form>
    </div>
  );
}

export function MachinePage({ name }: { name: string }) {
  const [machine, error, reload] = usePoll(
    () => api<Machine>("GET", `/v1/machines/${seg(name)}`),
    2000,
  );
  const [busy, setBusy] = useState<string | null>(null);
  const [actionError, setActionError] = useState<string | null>(null);
  const kind = machine?.state.kind ?? "unknown";
  const running = kind === "running";
  const metrics = useMetrics(name, running);

  async function act(label: string, work: () => Promise<unknown>) {
    setBusy(label);
    setActionError(null);
    try {
      await work();
    } catch (err) {
      setActionError(err instanceof Error ? err.message : String(err));
    } finally {
      setBusy(null);
      reload();
    }
  }
  const url = `/v1/machines/${seg(name)}`;
  const start = () => api("POST", `${url}/start`, { boot_timeout: 120 });
  const stop = () => api("POST", `${url}/stop`, { timeout: 10 });
  const remove = async () => {
    if (!window.confirm(`Delete sandbox ${name} and its disk?`)) return;
    await api("DELETE", `${url}?force=true`);
    window.location.hash = "#/";
  };

  if (error && !machine) return <ErrorBox error={error} />;
  if (!machine) return <p className="muted">Loading…</p>;
  return (
    <div className="page">
      <h2>
        {machine.name} <Badge state={kind} />
        {busy && <span className="muted small"> {busy}…</span>}
      </h2>
      {machine.state.reason && <p className="bad">{machine.state.reason}</p>}
      <div className="actions">
        <button disabled={!!busy || running} onClick={() => act("starting", start)}>
          Start
        </button>
        <button disabled={!!busy || !running} onClick={() => act("stopping", stop)}>
          Stop
        </button>
        <button
          disabled={!!busy || !running}
          onClick={() => act("restarting", async () => (await stop(), await start()))}
        >
          Restart
        </button>
        <button className="danger" disabled={!!busy} onClick={() => act("deleting", remove)}>
          Delete
        </button>
      </div>
      <ErrorBox error={actionError} />
      <dl className="facts">
        <dt>Image</dt>
        <dd>{machine.config.image}</dd>
        <dt>CPUs</dt>
        <dd>{machine.config.cpus}</dd>
        <dt>Memory</dt>
        <dd>{machine.config.memory_mb} MiB</dd>
        <dt>Disk</dt>
        <dd>{machine.config.disk_mb} MiB</dd>
        <dt>Acceleration</dt>
        <dd>{machine.runtime.accel ?? "–"}</dd>
        <dt>Boot</dt>
        <dd>{machine.runtime.boot_seconds ? `${machine.runtime.boot_seconds.toFixed(1)} s` : "–"}</dd>
        <dt>Started</dt>
        <dd>{when(machine.runtime.started_at)}</dd>
        <dt>Agent</dt>
        <dd>{machine.agent_ready ? "ready" : "not connected"}</dd>
      </dl>
      <section className="charts">
        <Chart title="CPU (QEMU process)" values={metrics.cpu} unit="%" max={100} testId="cpu-chart" />
        <Chart
          title="Memory (QEMU RSS)"
          values={metrics.rss}
          unit="MiB"
          max={metrics.limit}
          testId="memory-chart"
        />
        <p className="muted small">
          Host-side figures of the hypervisor process; configured memory {bytes(machine.config.memory_mb << 20)}.
        </p>
      </section>
      <section>
        <h3>Command</h3>
        <Exec name={name} ready={running && machine.agent_ready} />
      </section>
      <section>
        <h3>Console log {running && <span className="muted small">(live)</span>}</h3>
        <Logs name={name} running={running} />
      </section>
    </div>
  );
}
