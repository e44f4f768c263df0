// `prepare`: what `npm install <path to this directory>`, `npm pack` and `npm ci` run.
// Builds dist/src (JavaScript and .d.ts) from src/. A fresh checkout has no
// node_modules here, and npm does not install a linked directory's devDependencies,
// so the compiler is installed first, from this package's lockfile (as npm does for
// a git dependency).
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const npm = process.platform === "win32" ? "npm.cmd" : "npm";
const tsc = join(root, "node_modules", "typescript", "bin", "tsc");
if (!existsSync(tsc)) {
  // --ignore-scripts: this script is not run again by the nested install.
  execFileSync(npm, ["ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"], {
    cwd: root,
    stdio: "inherit",
  });
}
execFileSync(process.execPath, [tsc, "-p", join(root, "tsconfig.build.json")], { cwd: root, stdio: "inherit" });
