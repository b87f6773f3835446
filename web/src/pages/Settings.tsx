// Settings: the Docker engine the daemon reaches, the container settings file (engine
// address, registry mirrors) as the daemon reads it, and the default resources for new
// sandboxes (kept in this browser).
import { FormEvent, useState } from "react";
import { api } from "../api";
import { ErrorBox, usePoll } from "../components";
import { Defaults, loadDefaults, saveDefaults } from "../defaults";

interface UiSettings {
  containers: { docker_host: string | null; registry: { mirrors: Record<string, string[]>; insecure: string[] } };
  containers_file: string;
  machine_defaults: { image: string; cpus: number; memory_mb: number; disk_mb: number };
}

export function SettingsPage() {
  const [settings, settingsError] = usePoll(() => api<UiSettings>("GET", "/v1/daemon/settings"), 30000);
  const [engine, engineError] = usePoll(() => api<Record<string, unknown>>("GET", "/v1/engine"), 30000);
  const [defaults, setDefaults] = useState<Defaults>(loadDefaults());
  const [saved, setSaved] = useState(false);

  function save(e: FormEvent) {
    e.preventDefault();
    saveDefaults(defaults);
    setSaved(true);
  }

  const mirrors = Object.entries(settings?.containers.registry.mirrors ?? {});
  return (
    <div className="page">
      <h2>Settings</h2>
      <section className="card">
        <h3>Docker connection</h3>
        <ErrorBox error={engineError} />
        {engine && (
          <dl className="facts">
            <dt>Engine</dt>
            <dd className="mono">{String(engine.url)}</dd>
            <dt>Found through</dt>
            <dd>{String(engine.source)}</dd>
            <dt>Version</dt>
            <dd>
              {String(engine.version)} (API {String(engine.api_version)})
            </dd>
            <dt>Containers</dt>
            <dd>
              {String(engine.containers_running)} running of {String(engine.containers)}
            </dd>
          </dl>
        )}
        <p className="muted small">
          Configured address: <span className="mono">{settings?.containers.docker_host ?? "(none: DOCKER_HOST, then the default socket)"}</span>
        </p>
      </section>
      <section className="card">
        <h3>Registry mirrors</h3>
        <ErrorBox error={settingsError} />
        {mirrors.length === 0 ? (
          <p className="muted">No mirrors configured.</p>
        ) : (
          <ul>
            {mirrors.map(([registry, list]) => (
              <li key={registry}>
                <strong>{registry}</strong>: {list.join(", ")}
              </li>
            ))}
          </ul>
        )}
        <p className="muted small">
          Plain-HTTP registries: {settings?.containers.registry.insecure.join(", ") || "none"}. These
          settings are read from <span className="mono">{settings?.containers_file}</span> (edit it to
          change them; the daemon reads it on each use).
        </p>
      </section>
      <section className="card">
        <h3>Default resources for new sandboxes</h3>
        <form className="row-form" onSubmit={save}>
          <label>
            Image <input value={defaults.image} onChange={(e) => setDefaults({ ...defaults, image: e.target.value })} />
          </label>
          <label>
            CPUs{" "}
            <input
              type="number"
              min={1}
              max={64}
              value={defaults.cpus}
              onChange={(e) => setDefaults({ ...defaults, cpus: Number(e.target.value) })}
            />
          </label>
          <label>
            Memory <input value={defaults.memory} onChange={(e) => setDefaults({ ...defaults, memory: e.target.value })} />
          </label>
          <button type="submit">Save</button>
          {saved && <span className="ok">saved in this browser</span>}
        </form>
        {settings && (
          <p className="muted small">
            The daemon's own defaults: image {settings.machine_defaults.image}, {settings.machine_defaults.cpus} CPU,{" "}
            {settings.machine_defaults.memory_mb} MiB memory, {settings.machine_defaults.disk_mb} MiB disk.
          </p>
        )}
      </section>
    </div>
  );
}
