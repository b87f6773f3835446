// Default resources for new sandboxes: kept in this browser (the daemon has no settings
// endpoint for them); the settings page edits them, the dashboard's create form uses them.
export interface Defaults {
  image: string;
  cpus: number;
  memory: string;
}

const KEY = "cargobay.defaults";
export const FALLBACK: Defaults = { image: "default", cpus: 1, memory: "384MB" };

export function loadDefaults(): Defaults {
  try {
    return { ...FALLBACK, ...JSON.parse(localStorage.getItem(KEY) ?? "{}") };
  } catch {
    return FALLBACK;
  }
}

export function saveDefaults(value: Defaults): void {
  localStorage.setItem(KEY, JSON.stringify(value));
}
