/**
 * The operator's kit in deploy/: the Prometheus alert rules pass promtool's
 * check and their unit tests, and every series the rules and the Grafana
 * dashboard ask for is one the real API daemon exports.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { type Api, type Deployment, startDeployment } from '../harness/daemons.js';
import { tempDir } from './helpers/tmp.js';

const DEPLOY = fileURLToPath(new URL('../../deploy/', import.meta.url));
const RULES = `${DEPLOY}prometheus/token-shadow.rules.yml`;
const RULE_TESTS = `${DEPLOY}prometheus/token-shadow.rules.test.yml`;
const DASHBOARD = `${DEPLOY}grafana/token-shadow.json`;

/** CI installs promtool (Debian's prometheus package); elsewhere the check may be skipped. */
const promtoolMissing = spawnSync('promtool', ['--version']).error !== undefined;
const skipPromtool =
  promtoolMissing && !process.env.CI ? 'promtool is not installed (Debian: prometheus)' : false;

function promtool(...args: string[]): string {
  const run = spawnSync('promtool', args, { encoding: 'utf8' });
  assert.equal(run.error, undefined, 'promtool must be installed in CI');
  assert.equal(run.status, 0, `promtool ${args.join(' ')}:\n${run.stdout}${run.stderr}`);
  return run.stdout;
}

/** The metric names a PromQL expression reads (histogram suffixes taken off). */
function metricNames(expr: string): string[] {
  const names = expr.match(/\b(?:token_shadow|process|nodejs)_[a-z_]+\b/g) ?? [];
  return names.map((name) => name.replace(/_(bucket|sum|count)$/, ''));
}

function dashboardExprs(): string[] {
  const dashboard = JSON.parse(readFileSync(DASHBOARD, 'utf8')) as {
    panels: { targets?: { expr: string }[] }[];
    templating: { list: { query?: unknown }[] };
  };
  const panels = dashboard.panels.flatMap((p) => (p.targets ?? []).map((t) => t.expr));
  const variables = dashboard.templating.list.flatMap((v) =>
    typeof v.query === 'string' ? [v.query] : [],
  );
  return [...panels, ...variables];
}

function ruleExprs(): string[] {
  return [...readFileSync(RULES, 'utf8').matchAll(/^\s+expr: (.+)$/gm)].map((m) => m[1] as string);
}

describe('alert rules', () => {
  it('pass promtool check rules', { skip: skipPromtool }, () => {
    assert.match(promtool('check', 'rules', RULES), /SUCCESS: \d+ rules found/);
  });

  it("pass promtool's unit tests (each alert fires when it should, with its text)", {
    skip: skipPromtool,
  }, () => {
    assert.match(promtool('test', 'rules', RULE_TESTS), /SUCCESS/);
  });
});

describe('every series the rules and the dashboard read, the daemon exports', () => {
  let deployment: Deployment;
  let api: Api;
  const dir = tempDir();
  chmodSync(dir, 0o755);
  before(async () => {
    deployment = await startDeployment(dir);
    api = await deployment.startApi('api', ['--workers', '1', '--hash-threads', '1'], {
      metrics: true,
    });
  });
  after(() => deployment?.stop());

  it('names only metrics of /metrics', async () => {
    const reply = await fetch(`http://127.0.0.1:${api.metricsPort}/metrics`);
    const text = await reply.text();
    const exported = new Set([...text.matchAll(/^# TYPE (\S+) /gm)].map((m) => m[1]));
    assert.ok(exported.has('token_shadow_cache_hits_total'), 'the scrape has the worker metrics');
    const wanted = new Set([...dashboardExprs(), ...ruleExprs()].flatMap(metricNames));
    assert.ok(wanted.size > 15, `the dashboard and rules read ${wanted.size} metrics`);
    const unknown = [...wanted].filter((name) => !exported.has(name));
    assert.deepEqual(unknown, [], 'metrics the daemon does not export');
  });
});
