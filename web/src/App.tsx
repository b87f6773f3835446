// The shell: a top bar and a hash router (#/, #/machines/NAME, #/apps/new, #/apps/NAME,
// #/compose?path=..., #/settings). Hash routes keep every page reachable under /ui/
// without server-side fallbacks.
import { useEffect, useState } from "react";
import { Dashboard } from "./pages/Dashboard";
import { MachinePage } from "./pages/Machine";
import { Wizard } from "./pages/Wizard";
import { AppPage } from "./pages/AppInstance";
import { ComposePage } from "./pages/Compose";
import { SettingsPage } from "./pages/Settings";

function useHash(): string {
  const [hash, setHash] = useState(window.location.hash);
  useEffect(() => {
    const on = () => setHash(window.location.hash);
    window.addEventListener("hashchange", on);
    return () => window.removeEventListener("hashchange", on);
  }, []);
  return hash.replace(/^#/, "") || "/";
}

function route(hash: string) {
  const [path, query = ""] = hash.split("?");
  const params = new URLSearchParams(query);
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  if (parts[0] === "machines" && parts[1]) return <MachinePage key={parts[1]} name={parts[1]} />;
  if (parts[0] === "apps" && parts[1] === "new") return <Wizard />;
  if (parts[0] === "apps" && parts[1]) return <AppPage key={parts[1]} name={parts[1]} />;
  if (parts[0] === "compose") return <ComposePage key={query} path={params.get("path") ?? ""} />;
  if (parts[0] === "settings") return <SettingsPage />;
  return <Dashboard />;
}

export function App() {
  const hash = useHash();
  const section = hash.split("/")[1] ?? "";
  const tab = (href: string, label: string, active: boolean) => (
    <a href={href} className={active ? "active" : ""}>
      {label}
    </a>
  );
  return (
    <>
      <header className="top">
        <a href="#/" className="brand">
          CargoBay
        </a>
        <nav>
          {tab("#/", "Dashboard", section === "" || section === "machines")}
          {tab("#/apps/new", "New app instance", section === "apps")}
          {tab("#/compose", "Compose", section.startsWith("compose"))}
          {tab("#/settings", "Settings", section === "settings")}
        </nav>
      </header>
      <main>{route(hash)}</main>
    </>
  );
}
