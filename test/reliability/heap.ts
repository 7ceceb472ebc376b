/**
 * Reading V8 heap snapshots: does a string occur at all, and if it does, what
 * keeps it alive (the shortest retainer path from a GC root, weak edges
 * ignored). Enough of the .heapsnapshot format to answer "who holds the secret".
 */
import { readFileSync } from 'node:fs';

/** How often `needle` occurs in the snapshot's text (strings are stored verbatim). */
export function occurrences(text: string, needle: string): number {
  let count = 0;
  for (let at = text.indexOf(needle); at >= 0; at = text.indexOf(needle, at + 1)) count++;
  return count;
}

interface Snapshot {
  snapshot: {
    meta: {
      node_fields: string[];
      node_types: [string[], ...unknown[]];
      edge_fields: string[];
      edge_types: [string[], ...unknown[]];
    };
  };
  nodes: number[];
  edges: number[];
  strings: string[];
}

export interface Holder {
  /** The string node holding the needle: its type and (cut) value. */
  node: string;
  /**
   * One retainer chain: from a GC root down to the string, `type name` joined
   * by `--edge-->`. Each distinct holder of the string (after looking through
   * sliced and concatenated strings made from it) gets its own chain.
   */
  path: string;
}

/** Node types that only wrap other strings: a holder is whatever holds them. */
const WRAPPERS = new Set(['sliced string', 'concatenated string']);

/**
 * Every holder of every string containing `needle`: for each object that
 * references the string (directly or through slices and concatenations of
 * it), the shortest strong path from the root to that object, then down to
 * the string. Weak edges are ignored: they do not keep anything alive.
 */
let lastParsed: { file: string; snap: Snapshot } | null = null;

export function holders(file: string, needle: string, limit = 10): Holder[] {
  if (lastParsed?.file !== file) {
    lastParsed = { file, snap: JSON.parse(readFileSync(file, 'utf8')) as Snapshot };
  }
  const snap = lastParsed.snap;
  const { meta } = snap.snapshot;
  const nodeFields = meta.node_fields.length;
  const edgeFields = meta.edge_fields.length;
  const nType = meta.node_fields.indexOf('type');
  const nName = meta.node_fields.indexOf('name');
  const nEdges = meta.node_fields.indexOf('edge_count');
  const eType = meta.edge_fields.indexOf('type');
  const eName = meta.edge_fields.indexOf('name_or_index');
  const eTo = meta.edge_fields.indexOf('to_node');
  const nodeTypes = meta.node_types[0];
  const edgeTypes = meta.edge_types[0];
  const { nodes, edges, strings } = snap;
  const count = nodes.length / nodeFields;
  const weak = edgeTypes.indexOf('weak');

  const firstEdge = new Uint32Array(count + 1);
  for (let i = 0, e = 0; i < count; i++) {
    firstEdge[i] = e;
    e += (nodes[i * nodeFields + nEdges] as number) * edgeFields;
    firstEdge[i + 1] = e;
  }
  const typeOf = (i: number) => nodeTypes[nodes[i * nodeFields + nType] as number] ?? '?';
  const describeNode = (i: number) => {
    const name = strings[nodes[i * nodeFields + nName] as number] ?? '';
    return `${typeOf(i)} ${JSON.stringify(name.length > 60 ? `${name.slice(0, 60)}...` : name)}`;
  };
  const edgeName = (e: number) => {
    const type = edgeTypes[edges[e + eType] as number] ?? '?';
    const raw = edges[e + eName] as number;
    const name = type === 'element' || type === 'hidden' ? `[${raw}]` : (strings[raw] ?? raw);
    return `${type}:${name}`;
  };

  const targets: number[] = [];
  for (let i = 0; i < count && targets.length < limit; i++) {
    const name = strings[nodes[i * nodeFields + nName] as number];
    if (typeOf(i) !== 'sliced string' && name?.includes(needle)) targets.push(i);
  }
  if (targets.length === 0) return [];

  // Incoming strong edges of every node.
  const inCount = new Uint32Array(count + 1);
  for (let e = 0; e < edges.length; e += edgeFields) {
    if (edges[e + eType] !== weak) (inCount[(edges[e + eTo] as number) / nodeFields] as number)++;
  }
  const inStart = new Uint32Array(count + 1);
  for (let i = 0; i < count; i++) inStart[i + 1] = (inStart[i] as number) + (inCount[i] as number);
  const inEdge = new Uint32Array(inStart[count] as number);
  const inFrom = new Uint32Array(inStart[count] as number);
  const fill = inStart.slice();
  for (let from = 0; from < count; from++) {
    for (let e = firstEdge[from] as number; e < (firstEdge[from + 1] as number); e += edgeFields) {
      if (edges[e + eType] === weak) continue;
      const to = (edges[e + eTo] as number) / nodeFields;
      const at = (fill[to] as number)++;
      inEdge[at] = e;
      inFrom[at] = from;
    }
  }

  // Breadth-first from the root (node 0) over strong edges: each node's parent edge.
  const parentEdge = new Int32Array(count).fill(-1);
  const parentNode = new Int32Array(count).fill(-1);
  const seen = new Uint8Array(count);
  const queue = new Uint32Array(count);
  let head = 0;
  let tail = 0;
  queue[tail++] = 0;
  seen[0] = 1;
  while (head < tail) {
    const from = queue[head++] as number;
    for (let e = firstEdge[from] as number; e < (firstEdge[from + 1] as number); e += edgeFields) {
      if (edges[e + eType] === weak) continue;
      const to = (edges[e + eTo] as number) / nodeFields;
      if (seen[to]) continue;
      seen[to] = 1;
      parentEdge[to] = e;
      parentNode[to] = from;
      queue[tail++] = to;
    }
  }
  const pathTo = (node: number): string[] => {
    const steps: string[] = [];
    for (let i = node; i !== 0; i = parentNode[i] as number) {
      steps.unshift(`--${edgeName(parentEdge[i] as number)}--> ${describeNode(i)}`);
    }
    return steps;
  };

  const found: Holder[] = [];
  for (const target of targets) {
    // Walk up through wrapper strings; every non-wrapper referrer is one holder.
    const stack: Array<{ node: number; below: string[]; depth: number }> = [
      { node: target, below: [], depth: 0 },
    ];
    const visited = new Set<number>([target]);
    while (stack.length > 0 && found.length < limit) {
      const { node, below, depth } = stack.pop() as (typeof stack)[number];
      for (let k = inStart[node] as number; k < (inStart[node + 1] as number); k++) {
        const from = inFrom[k] as number;
        const step = `--${edgeName(inEdge[k] as number)}--> ${describeNode(node)}`;
        if (visited.has(from) || !seen[from]) continue;
        visited.add(from);
        if (WRAPPERS.has(typeOf(from)) && depth < 4) {
          stack.push({ node: from, below: [step, ...below], depth: depth + 1 });
        } else {
          const path = ['root', ...pathTo(from), step, ...below].join(' ');
          found.push({ node: describeNode(target), path });
        }
      }
    }
  }
  return found;
}
