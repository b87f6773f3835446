// One app instance: status and containers/processes, deploy (its task's events streamed),
// start/stop/restart/delete, its compose file, and its recent logs.
import { useState } from "react";
import { api, AppInstance, seg, streamEvents } from "../api";
import { Badge, bytes, Chart, ErrorBox, usePoll } from "../components";

interface Stats {
  name: string;
  cpu_percent: number;
  memory_usage: number;
  memory_limit: number;
}

/** CPU and memory of the instance's running containers, one pair of charts each. */
function ContainerCharts({ url }: { url: string }) {
  const [history, setHistory] = useState<Record<string, { cpu: number[]; mem: number[]; limit: number }>>({});
  usePoll(async () => {
    const stats = await api<Stats[]>("GET", `${url}/stats`);
    setHistory((old) => {
      const next: typeof old = {};
      for (const s of stats) {
        const h = old[s.name] ?? { cpu: [], mem: [], limit: 0 };
        next[s.name] = {
          cpu: [...h.cpu, s.cpu_percent].slice(-60),
          mem: [...h.mem, s.memory_usage / (1 << 20)].slice(-60),
          limit: s.memory_limit / (1 << 20),
        };
      }
      return next;
    });
    return stats;
  }, 3000);
  const names = Object.keys(history).sort();
  if (names.length === 0) return null;
  return (
    <section>
      <h3>Resources</h3>
      {names.map((name) => (
        <div key={name} className="charts">
          <Chart title={`${name} CPU`} values={history[name].cpu} unit="%" max={100} />
          <Chart title={`${name} memory`} values={history[name].mem} unit="MiB" />
          <p className="muted small">limit {bytes(history[name].limit * (1 << 20))}</p>
        </div>
      ))}
    </section>
  );
}

interface Status {
  instance: AppInstance;
  containers: { name: string; service: string; state: string; status: string; image: string }[];
  processes: { name?: string; state?: string; pid?: number }[];
}

export function AppPage({ name }: { name: string }) {
  const url = `/v1/apps/${seg(name)}`;
  const [inst, error, reload] = usePoll(() => api<AppInstance>("GET", url), 3000);
  // the containers/processes need the engine; the page works without them
  const [status, statusError] = usePoll(() => api<Status>("GET", `${url}/status`), 5000);
  const [busy, setBusy] = useState<string | null>(null);
  const [actionError, setActionError] = useState<string | null>(null);
  const [output, setOutput] = useState("");
  const [service, setService] = useState("");

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
  const deploy = () => {
    setOutput("");
    return streamEvents("POST", `${url}/deploy?follow=true`, undefined, (e) => {
      const text = e.type === "task" ? "deployment started" : `${e.step ?? ""} ${e.message ?? ""}`;
      setOutput((o) => o + text.trim() + "\n");
    });
  };
  const logs = () => {
    setOutput("");
    const only = service ? `&service=${seg(service)}` : "";
    return streamEvents("GET", `${url}/logs?tail=200${only}`, undefined, (e) =>
      setOutput((o) => o + `${e.service ?? e.container ?? ""} | ${e.line ?? ""}\n`),
    );
  };
  const remove = async () => {
    if (!window.confirm(`Delete app instance ${name} and its data?`)) return;
    await api("DELETE", url);
    window.location.hash = "#/";
  };

  if (error && !inst) return <ErrorBox error={error} />;
  if (!inst) return <p className="muted">Loading…</p>;
  return (
    <div className="page">
      <h2>
        {inst.name} <Badge state={inst.status} />
        {busy && <span className="muted small"> {busy}…</span>}
      </h2>
      {inst.status_message && <p className="bad">{inst.status_message}</p>}
      <div className="actions">
        <button disabled={!!busy} onClick={() => act("deploying", deploy)}>
          Deploy
        </button>
        {(["start", "stop", "restart"] as const).map((verb) => (
          <button key={verb} disabled={!!busy} onClick={() => act(verb, () => api("POST", `${url}/${verb}`))}>
            {verb[0].toUpperCase() + verb.slice(1)}
          </button>
        ))}
        <button disabled={!!busy} onClick={() => act("reading logs", logs)}>
          Logs
        </button>
        <select name="service" value={service} onChange={(e) => setService(e.target.value)}>
          <option value="">all services</option>
          {[...new Set((status?.containers ?? []).map((c) => c.service))].map((name) => (
            <option key={name}>{name}</option>
          ))}
          {(status?.processes ?? []).map((p) => (
            <option key={`p-${p.name}`}>{p.name}</option>
          ))}
        </select>
        <button className="danger" disabled={!!busy} onClick={() => act("deleting", remove)}>
          Delete
        </button>
      </div>
      <ErrorBox error={actionError} />
      <dl className="facts">
        <dt>Mode</dt>
        <dd>{inst.deploy_mode}</dd>
        <dt>Version</dt>
        <dd>{inst.version}</dd>
        <dt>Description</dt>
        <dd>{inst.description || "–"}</dd>
        <dt>Compose file</dt>
        <dd>
          {inst.docker_compose_path ? (
            <a href={`#/compose?path=${seg(inst.docker_compose_path)}`}>{inst.docker_compose_path}</a>
          ) : (
            "– (made by the first deploy)"
          )}
        </dd>
      </dl>
      {statusError && <p className="muted">Containers: {statusError}</p>}
      {status && status.containers.length > 0 && (
        <table>
          <thead>
            <tr>
              <th>Service</th>
              <th>Container</th>
              <th>State</th>
              <th>Image</th>
            </tr>
          </thead>
          <tbody>
            {status.containers.map((c) => (
              <tr key={c.name}>
                <td>{c.service}</td>
                <td>{c.name}</td>
                <td>
                  <Badge state={c.state} /> {c.status}
                </td>
                <td>{c.image}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {status && status.containers.some((c) => c.state === "running") && <ContainerCharts url={url} />}
      {output && <pre className="terminal">{output}</pre>}
    </div>
  );
}
