/**
 * Pools: what evaluating pool ACLs costs. With P pools (0, 100, 1,000; 10,000
 * with --full), each with 10 VMs and one storage, and a group's role on every
 * tenth pool:
 *
 * - permissions() of a group member at a VM of a granted pool, at a VM of an
 *   ungranted pool, at a VM in no pool, and at a path pools never touch
 *   (/nodes/n1): the member paths cost one scan of the pools and one ACL walk
 *   per pool found;
 * - permissionsTree() (GET /access/permissions without a path): every pool
 *   member's path is in it, as in PVE;
 * - reading and writing the user.cfg (parseUserConfig, writeUserConfig).
 *
 *   npx tsc -p . && node dist/bench/pools.js [--full]
 */
import { parseUserConfig, permissions, permissionsTree, writeUserConfig } from '../src/index.js';
import { fmt, machineLine, median, nsPerOp, resultsDir, stamp, writeResults } from './lib/stats.js';
import { type BenchOptions, type BenchResult, isMain, standaloneOptions } from './lib/suite.js';
import { printTable } from './lib/table.js';

const VMS_PER_POOL = 10;
const NOW = 1_000;

function userCfg(pools: number): string {
  const lines = ['user:root@pam:1:0::::::', 'user:ann@pve:1:0::::::', 'group:staff:ann@pve::'];
  for (let p = 0; p < pools; p++) {
    const first = 1000 + p * VMS_PER_POOL;
    const vms = Array.from({ length: VMS_PER_POOL }, (_, i) => first + i).join(',');
    lines.push(`pool:pool${p}::${vms}:store${p}:`);
  }
  lines.push('acl:1:/vms:ann@pve:PVEAuditor:');
  for (let p = 0; p < pools; p += 10) lines.push(`acl:1:/pool/pool${p}:@staff:PVEVMUser:`);
  return `${lines.join('\n')}\n`;
}

/** Milliseconds per call, the median of `rounds` timed calls after one untimed. */
function msPerCall(fn: () => unknown, rounds: number): number {
  const samples: number[] = [];
  for (let r = -1; r < rounds; r++) {
    const start = process.hrtime.bigint();
    fn();
    if (r >= 0) samples.push(Number(process.hrtime.bigint() - start) / 1e6);
  }
  return median(samples);
}

interface SizeResult {
  pools: number;
  grantedVmNs: number;
  ungrantedVmNs: number;
  unpooledVmNs: number;
  otherPathNs: number;
  treeMs: number;
  treePaths: number;
  parseMs: number;
  writeMs: number;
}

function measure(pools: number, full: boolean): SizeResult {
  const text = userCfg(pools);
  const { config, warnings } = parseUserConfig(text);
  if (warnings.length > 0) throw new Error(`fixture warnings: ${warnings[0]?.message}`);
  const granted = pools > 0 ? '/vms/1000' : '/vms/1';
  const ungranted = pools > 1 ? '/vms/1010' : '/vms/2';
  // Sanity: the grant through the pool is there, and only there.
  if (pools > 0 && !permissions(config, 'ann@pve', granted, NOW).has('VM.PowerMgmt')) {
    throw new Error('the pool grant is missing');
  }
  if (permissions(config, 'ann@pve', ungranted, NOW).has('VM.PowerMgmt')) {
    throw new Error('an ungranted pool grants');
  }
  const ops = pools >= 1000 ? 2_000 : 20_000;
  const at = (path: string) => nsPerOp(() => permissions(config, 'ann@pve', path, NOW), ops);
  const rounds = full ? 7 : 3;
  let treePaths = 0;
  return {
    pools,
    grantedVmNs: at(granted),
    ungrantedVmNs: at(ungranted),
    unpooledVmNs: at('/vms/99'),
    otherPathNs: at('/nodes/n1'),
    treeMs: msPerCall(() => {
      treePaths = Object.keys(permissionsTree(config, 'ann@pve', { now: NOW })).length;
    }, rounds),
    treePaths,
    parseMs: msPerCall(() => parseUserConfig(text), rounds),
    writeMs: msPerCall(() => writeUserConfig(config), rounds),
  };
}

export async function run(options: BenchOptions): Promise<BenchResult> {
  const sizes = options.full ? [0, 100, 1000, 10_000] : [0, 100, 1000];
  const results = sizes.map((pools) => measure(pools, options.full));
  const table = printTable(
    `permissions() with pools (${VMS_PER_POOL} VMs each, a group role on every 10th); ${machineLine()}`,
    [
      'pools',
      'granted VM ns',
      'ungranted VM ns',
      'VM in no pool ns',
      '/nodes/n1 ns',
      'tree ms',
      'tree paths',
      'parse ms',
      'write ms',
    ],
    results.map((r) => [
      r.pools,
      fmt(r.grantedVmNs),
      fmt(r.ungrantedVmNs),
      fmt(r.unpooledVmNs),
      fmt(r.otherPathNs),
      fmt(r.treeMs),
      r.treePaths,
      fmt(r.parseMs),
      fmt(r.writeMs),
    ]),
  );
  const data = { ...stamp(options), vmsPerPool: VMS_PER_POOL, results };
  writeResults('pools', data, options.outDir);
  return { name: 'pools', markdown: [table], targets: [], data };
}

if (isMain(import.meta.url)) await run(standaloneOptions(resultsDir));
