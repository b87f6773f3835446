// The app instance creation wizard of seed 002 (section 5.3): basics, deploy mode,
// versions, configuration, confirm.  Each step checks its fields before "Next" (the same
// rules as the daemon's model); the last step posts to /v1/apps and shows the daemon's
// own error if it refuses.
import { useState } from "react";
import { api, AppInstance, seg } from "../api";
import { ErrorBox } from "../components";

const STEPS = ["Basics", "Deploy mode", "Versions", "Configuration", "Confirm"];
const NAME_RE = /^[a-z0-9][a-z0-9_-]{0,47}$/;
const VERSION_RE = /^[A-Za-z0-9][A-Za-z0-9._+-]*$/;
const IPV4_RE = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;

type Mode = "docker" | "local" | "wsl2_docker";

interface Form {
  name: string;
  description: string;
  mode: Mode;
  wslDistro: string;
  version: string;
  napcatVersion: string;
  repoUrl: string;
  branch: string;
  napcatUrl: string;
  napcatSha256: string;
  webuiPort: string;
  napcatPort: string;
  sqliteWeb: boolean;
  sqliteWebPort: string;
  bindAddress: string;
  timezone: string;
}

const INITIAL: Form = {
  name: "",
  description: "",
  mode: "docker",
  wslDistro: "",
  version: "latest",
  napcatVersion: "latest",
  repoUrl: "",
  branch: "",
  napcatUrl: "",
  napcatSha256: "",
  webuiPort: "18001",
  napcatPort: "6099",
  sqliteWeb: false,
  sqliteWebPort: "8120",
  bindAddress: "127.0.0.1",
  timezone: "Asia/Shanghai",
};

type Errors = Partial<Record<keyof Form, string>>;

function port(value: string): boolean {
  return /^\d+$/.test(value) && Number(value) >= 1 && Number(value) <= 65535;
}

export function validate(step: number, f: Form): Errors {
  const e: Errors = {};
  if (step === 0) {
    if (!NAME_RE.test(f.name))
      e.name = "1-48 characters of a-z, 0-9, '-' and '_', starting with a letter or digit";
    if (f.description.length > 500) e.description = "at most 500 characters";
  } else if (step === 1) {
    if (f.mode === "wsl2_docker" && !f.wslDistro.trim())
      e.wslDistro = "WSL2 + Docker needs the WSL distribution's name";
  } else if (step === 2) {
    if (!f.version.trim() || f.version.length > 64) e.version = "1-64 characters";
    if (f.mode !== "local" && !/^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/.test(f.napcatVersion))
      e.napcatVersion = "an image tag: letters, digits, '_', '.', '-'";
    if (f.mode === "local") {
      if (!/^(https?|file|ssh|git):\/\/\S+$/.test(f.repoUrl))
        e.repoUrl = "the MaiBot repository: an http(s)/file/ssh/git URL";
      const any = f.napcatUrl || f.napcatSha256;
      if (any) {
        if (!/^https?:\/\/\S+$/.test(f.napcatUrl)) e.napcatUrl = "an http(s) URL";
        if (!/^[0-9a-fA-F]{64}$/.test(f.napcatSha256))
          e.napcatSha256 = "64 hexadecimal characters";
        if (!VERSION_RE.test(f.napcatVersion)) e.napcatVersion = "a version like 4.8.93";
      }
    }
  } else if (step === 3) {
    const used = new Map<string, string>();
    const ports: [keyof Form, string, string, boolean][] = [
      ["webuiPort", "the WebUI", f.webuiPort, true],
      ["napcatPort", "the NapCat WebUI", f.napcatPort, true],
      ["sqliteWebPort", "sqlite-web", f.sqliteWebPort, f.sqliteWeb],
    ];
    for (const [key, label, value, on] of ports) {
      if (!on) continue;
      if (!port(value)) e[key] = "a port from 1 to 65535";
      else if (used.has(value)) e[key] = `also used by ${used.get(value)}`;
      else used.set(value, label);
    }
    const ip = IPV4_RE.exec(f.bindAddress);
    if (!(ip && ip.slice(1).every((n) => Number(n) <= 255)) && !f.bindAddress.includes(":"))
      e.bindAddress = "an IP address, like 127.0.0.1 or 0.0.0.0";
    if (!f.timezone.trim()) e.timezone = "a time zone, like Asia/Shanghai";
  }
  return e;
}

export function body(f: Form): Record<string, unknown> {
  const stack: Record<string, unknown> = {
    webui_port: Number(f.webuiPort),
    napcat_port: Number(f.napcatPort),
    sqlite_web: f.sqliteWeb,
    sqlite_web_port: Number(f.sqliteWebPort),
    bind_address: f.bindAddress,
    timezone: f.timezone,
  };
  const out: Record<string, unknown> = {
    name: f.name,
    description: f.description,
    deploy_mode: f.mode,
    version: f.version,
    stack,
  };
  if (f.mode === "local") {
    out.repo_url = f.repoUrl;
    if (f.branch) out.branch = f.branch;
    if (f.napcatUrl)
      out.napcat = { url: f.napcatUrl, sha256: f.napcatSha256.toLowerCase(), version: f.napcatVersion };
  } else {
    stack.napcat_image = `mlikiowa/napcat-docker:${f.napcatVersion}`;
    stack.core_image = `sengokucola/maibot:${f.version}`;
  }
  if (f.mode === "wsl2_docker") out.wsl_distro = f.wslDistro;
  return out;
}

export function Wizard() {
  const [step, setStep] = useState(0);
  const [form, setForm] = useState<Form>(INITIAL);
  const [errors, setErrors] = useState<Errors>({});
  const [busy, setBusy] = useState(false);
  const [serverError, setServerError] = useState<string | null>(null);

  const set = <K extends keyof Form>(key: K, value: Form[K]) =>
    setForm((f) => ({ ...f, [key]: value }));

  const field = (key: keyof Form, label: string, props: { placeholder?: string; type?: string } = {}) => (
    <label className={errors[key] ? "field invalid" : "field"}>
      <span>{label}</span>
      <input
        name={key}
        value={String(form[key])}
        onChange={(e) => set(key, e.target.value as never)}
        {...props}
      />
      {errors[key] && <small className="field-error">{errors[key]}</small>}
    </label>
  );

  function next() {
    const found = validate(step, form);
    setErrors(found);
    if (Object.keys(found).length === 0) setStep((s) => s + 1);
  }

  async function create() {
    setBusy(true);
    setServerError(null);
    try {
      const created = await api<AppInstance>("POST", "/v1/apps", body(form));
      window.location.hash = `#/apps/${seg(created.name)}`;
    } catch (err) {
      setServerError(err instanceof Error ? err.message : String(err));
    } finally {
      setBusy(false);
    }
  }

  return (
    <div className="page wizard">
      <h2>New app instance</h2>
      <ol className="steps">
        {STEPS.map((s, i) => (
          <li key={s} className={i === step ? "current" : i < step ? "done" : ""}>
            {i + 1}. {s}
          </li>
        ))}
      </ol>
      <div className="card" data-testid={`wizard-step-${step + 1}`}>
        <h3>
          Step {step + 1}: {STEPS[step]}
        </h3>
        {step === 0 && (
          <>
            {field("name", "Instance name", { placeholder: "maibot-1" })}
            <label className={errors.description ? "field invalid" : "field"}>
              <span>Description</span>
              <textarea
                name="description"
                value={form.description}
                onChange={(e) => set("description", e.target.value)}
              />
              {errors.description && <small className="field-error">{errors.description}</small>}
            </label>
          </>
        )}
        {step === 1 && (
          <>
            {(
              [
                ["local", "Local", "a checkout of the repository and a virtualenv on this host"],
                ["docker", "Docker", "a compose stack on the Docker engine (recommended)"],
                ["wsl2_docker", "WSL2 + Docker", "the stack inside a WSL2 distribution (Windows only)"],
              ] as [Mode, string, string][]
            ).map(([value, label, hint]) => (
              <label key={value} className="choice">
                <input
                  type="radio"
                  name="mode"
                  value={value}
                  checked={form.mode === value}
                  onChange={() => set("mode", value)}
                />
                <strong>{label}</strong> <span className="muted">{hint}</span>
              </label>
            ))}
            {form.mode === "wsl2_docker" && field("wslDistro", "WSL distribution", { placeholder: "Ubuntu" })}
          </>
        )}
        {step === 2 && (
          <>
            {field("version", "MaiBot version", { placeholder: "latest" })}
            {form.mode === "local" ? (
              <>
                {field("repoUrl", "MaiBot repository", { placeholder: "https://github.com/MaiM-with-u/MaiBot" })}
                {field("branch", "Branch (optional)")}
                <p className="muted small">NapCat release (optional: all three or none)</p>
                {field("napcatUrl", "NapCat archive URL")}
                {field("napcatSha256", "NapCat SHA-256")}
                {field("napcatVersion", "NapCat version")}
              </>
            ) : (
              field("napcatVersion", "NapCat version (image tag)", { placeholder: "latest" })
            )}
          </>
        )}
        {step === 3 && (
          <>
            {field("webuiPort", "WebUI port")}
            {field("napcatPort", "NapCat WebUI port")}
            <label className="choice">
              <input
                type="checkbox"
                name="sqliteWeb"
                checked={form.sqliteWeb}
                onChange={(e) => set("sqliteWeb", e.target.checked)}
              />
              Include sqlite-web (database browser)
            </label>
            {form.sqliteWeb && field("sqliteWebPort", "sqlite-web port")}
            {field("bindAddress", "Bind address")}
            {field("timezone", "Time zone")}
          </>
        )}
        {step === 4 && (
          <>
            <p>The daemon will create this instance (deploy it afterwards from its page):</p>
            <pre className="terminal" data-testid="wizard-summary">
              {JSON.stringify(body(form), null, 2)}
            </pre>
            <ErrorBox error={serverError} />
          </>
        )}
        <div className="actions">
          <button type="button" disabled={step === 0 || busy} onClick={() => setStep((s) => s - 1)}>
            Back
          </button>
          {step < STEPS.length - 1 ? (
            <button type="button" onClick={next}>
              Next
            </button>
          ) : (
            <button type="button" disabled={busy} onClick={create}>
              {busy ? "Creating…" : "Create instance"}
            </button>
          )}
        </div>
      </div>
    </div>
  );
}
