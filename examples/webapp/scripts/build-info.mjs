// Writes the build's health document next to the built app:
//   dist/webapp/browser/healthz.json  {"status":"ok","version":...,"commit":...}
// The container answers /healthz with it (probes, monitoring) and the app shows
// its version and commit in the footer.
//
// Usage: node scripts/build-info.mjs [OUT_DIR]
//   version: $APP_VERSION, else package.json's version
//   commit:  $CODEBUILD_RESOLVED_SOURCE_VERSION, else `git rev-parse HEAD`, else "unknown"
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';

const outDir = process.argv[2] ?? 'dist/webapp/browser';
if (!existsSync(join(outDir, 'index.html'))) {
  console.error(`build-info: ${outDir}/index.html not found; run 'npx ng build' first`);
  process.exit(2);
}

function gitCommit() {
  try {
    return execFileSync('git', ['rev-parse', 'HEAD'], { stdio: ['ignore', 'pipe', 'ignore'] })
      .toString()
      .trim();
  } catch {
    return '';
  }
}

const pkg = JSON.parse(readFileSync('package.json', 'utf8'));
const info = {
  status: 'ok',
  version: process.env.APP_VERSION || pkg.version,
  commit: process.env.CODEBUILD_RESOLVED_SOURCE_VERSION || gitCommit() || 'unknown',
};
writeFileSync(join(outDir, 'healthz.json'), JSON.stringify(info) + '\n');
console.log(`build-info: ${join(outDir, 'healthz.json')} ${JSON.stringify(info)}`);
