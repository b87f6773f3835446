// The dashboard: sandboxes (machines), app instances and compose stacks, polled every
// two seconds, and a form that creates a sandbox.
import { FormEvent, useState } from "react";
import { api, AppInstance, ContainerSummary, ImageManifest, Machine, seg } from "../api";
import { Badge, ErrorBox, usePoll, when } from "../components";
import { loadDefaults } from "../defaults";

const NAME_RE = /^[a-z0-9][a-z0-9_.-]{0,62}$/;

interface Stack {
  project: string;
  running: number;
  total: number;
  files: string[];
  workingDir: string;
}

function stacks(containers: ContainerSummary[]): Stack[] {
  const byProject = new Map<string, Stack>();
  for (const c of containers) {
    if (!c.project) continue;
    const s = byProject.get(c.project) ?? {
      project: c.project,
      running: 0,
      total: 0,
      files: (c.labels["com.docker.compose.project.config_files"] ?? "")
        .split(",")
        .filter(Boolean),
      workingDir: c.labels["com.docker.compose.project.working_dir"] ?? "",
    };
    s.total += 1;
    if (c.state === "running") s.running += 1;
    byProject.set(c.project, s);
  }
  return [...byProject.values()].sort((a, b) => a.project.localeCompare(b.project));
}

function CreateSandbox({ onCreated }: { onCreated: () => void }) {
  const defaults = loadDefaults();
  const [name, setName] = useState("");
  const [image, setImage] = useState(defaults.image);
  const [cpus, setCpus] = useState(defaults.cpus);
  const [memory, setMemory] = useState(defaults.memory);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const [images] = usePoll(() => api<ImageManifest[]>("GET", "/v1/images"), 30000);

  async function submit(e: FormEvent) {
    e.preventDefault();
    if (!NAME_RE.test(name)) {
      setError("name: 1-63 of a-z 0-9 - _ . starting with a letter or digit");
      return;
    }
    setBusy(true);
    setError(null);
    try {
      await api("POST", "/v1/machines", { name, image, cpus, memory, start: true });
      setName("");
      onCreated();
    } catch (err) {
      setError(err instanceof Error ? err.message : String(err));
    } finally {
      setBusy(false);
    }
  }

  return (
    <form className="card row-form" onSubmit={submit} aria-label="create sandbox">
      <label>
        Name <input name="name" value={name} onChange={(e) => setName(e.target.value)} required />
      </label>
      <label>
        Image
        <select name="image" value={image} onChange={(e) => setImage(e.target.value)}>
          {[...new Set([image, ...(images ?? []).map((i) => i.name)])].map((n) => (
            <option key={n}>{n}</option>
          ))}
        </select>
      </label>
      <label>
        CPUs{" "}
        <input
          name="cpus"
          type="number"
          min={1}
          max={64}
          value={cpus}
          onChange={(e) => setCpus(Number(e.target.value))}
        />
      </label>
      <label>
        Memory <input name="memory" value={memory} onChange={(e) => setMemory(e.target.value)} />
      </label>
      <button type="submit" disabled={busy}>
        {busy ? "Creating and booting…" : "Create sandbox"}
      </button>
      <ErrorBox error={error} />
    </form>
  );
}

export function Dashboard() {
  const [machines, machinesError, reload] = usePoll(
    () => api<Machine[]>("GET", "/v1/machines"),
    2000,
  );
  const [apps, appsError] = usePoll(() => api<AppInstance[]>("GET", "/v1/apps"), 3000);
  const [containers, engineError] = usePoll(
    () => api<ContainerSummary[]>("GET", "/v1/engine/containers?all=true"),
    5000,
  );
  return (
    <div className="page">
      <section>
        <h2>Sandboxes</h2>
        <CreateSandbox onCreated={reload} />
        <ErrorBox error={machinesError} />
        <table data-testid="machines">
          <thead>
            <tr>
              <th>Name</th>
              <th>State</th>
              <th>Image</th>
              <th>CPUs</th>
              <th>Memory</th>
              <th>Agent</th>
              <th>Created</th>
            </tr>
          </thead>
          <tbody>
            {(machines ?? []).map((m) => (
              <tr key={m.id} data-machine={m.name}>
                <td>
                  <a href={`#/machines/${seg(m.name)}`}>{m.name}</a>
                </td>
                <td>
                  <Badge state={m.state.kind} />
                </td>
                <td>{m.config.image}</td>
                <td>{m.config.cpus}</td>
                <td>{m.config.memory_mb} MiB</td>
                <td>{m.agent_ready ? "ready" : "–"}</td>
                <td>{when(m.created_at)}</td>
              </tr>
            ))}
            {machines && machines.length === 0 && (
              <tr>
                <td colSpan={7} className="muted">
                  No sandboxes yet.
                </td>
              </tr>
            )}
          </tbody>
        </table>
      </section>

      <section>
        <h2>
          App instances <a href="#/apps/new" className="small">+ new</a>
        </h2>
        <ErrorBox error={appsError} />
        <table data-testid="apps">
          <thead>
            <tr>
              <th>Name</th>
              <th>Mode</th>
              <th>Status</th>
              <th>Version</th>
              <th>Description</th>
            </tr>
          </thead>
          <tbody>
            {(apps ?? []).map((a) => (
              <tr key={a.name}>
                <td>
                  <a href={`#/apps/${seg(a.name)}`}>{a.name}</a>
                </td>
                <td>{a.deploy_mode}</td>
                <td>
                  <Badge state={a.status} />
                </td>
                <td>{a.version}</td>
                <td>{a.description}</td>
              </tr>
            ))}
            {apps && apps.length === 0 && (
              <tr>
                <td colSpan={5} className="muted">
                  No app instances.
                </td>
              </tr>
            )}
          </tbody>
        </table>
      </section>

      <section>
        <h2>Compose stacks</h2>
        {engineError ? (
          <p className="muted">Docker engine: {engineError}</p>
        ) : (
          <table data-testid="stacks">
            <thead>
              <tr>
                <th>Project</th>
                <th>Containers</th>
                <th>File</th>
              </tr>
            </thead>
            <tbody>
              {stacks(containers ?? []).map((s) => (
                <tr key={s.project}>
                  <td>{s.project}</td>
                  <td>
                    <Badge state={s.running === s.total ? "running" : s.running ? "partial" : "stopped"} />{" "}
                    {s.running}/{s.total} running
                  </td>
                  <td>
                    {s.files.map((f) => (
                      <a key={f} href={`#/compose?path=${seg(f)}`}>
                        {f}
                      </a>
                    ))}
                  </td>
                </tr>
              ))}
              {containers && stacks(containers).length === 0 && (
                <tr>
                  <td colSpan={3} className="muted">
                    No compose stacks on the engine.
                  </td>
                </tr>
              )}
            </tbody>
          </table>
        )}
      </section>
    </div>
  );
}
