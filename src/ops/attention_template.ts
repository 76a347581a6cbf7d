/**
 * The small template language of shaders/attention.wgsl. Deno's WebGPU bounds every runtime loop
 * and clamps every dynamic index, so the attention kernels unroll their inner loops at expansion
 * (register tiles become named variables, workgroup-memory indices constants). Directives, one
 * per line:
 *   //#for x in EXPR … //#end       repeat the enclosed lines for x = 0 … EXPR−1
 *   CODE //#for x in E1, y in E2    repeat one line over the product of the ranges
 *   //#if EXPR … //#else … //#end   keep one branch
 *   //#let NAME = EXPR              bind NAME for the rest of the enclosing block
 *   //#def NAME … //#enddef         (top level) define a block of lines, expanded by
 *   //#use NAME                     with the bindings in effect where it is used
 *   {EXPR}                          substitute the value (no spaces inside the braces)
 * EXPR is integer arithmetic (+ − * / % with / truncating, comparisons, && || !) over numbers,
 * loop variables, bindings and the constants given; a constant may also be a string (a WGSL name
 * or literal), substituted as is.
 */

export type Val = number | string | boolean;
type Env = Record<string, Val>;

function evalExpr(src: string, env: Env): Val {
  const toks = src.match(/\d+|[A-Za-z_]\w*|&&|\|\||==|!=|<=|>=|[-+*/%()<>!]/g) ?? [];
  if (toks.join("") !== src.replace(/\s+/g, "")) throw new Error(`template: bad expression ${src}`);
  let at = 0;
  const num = (v: Val) => (typeof v === "boolean" ? (v ? 1 : 0) : Number(v));
  const binary: [string[], (a: Val, b: Val, op: string) => Val][] = [
    [["||"], (a, b) => num(a) !== 0 || num(b) !== 0],
    [["&&"], (a, b) => num(a) !== 0 && num(b) !== 0],
    [["==", "!="], (a, b, op) => (num(a) === num(b)) === (op === "==")],
    [["<", "<=", ">", ">="], (a, b, op) => {
      const x = num(a), y = num(b);
      return op === "<" ? x < y : op === "<=" ? x <= y : op === ">" ? x > y : x >= y;
    }],
    [["+", "-"], (a, b, op) => op === "+" ? num(a) + num(b) : num(a) - num(b)],
    [["*", "/", "%"], (a, b, op) => {
      const x = num(a), y = num(b);
      return op === "*" ? x * y : op === "/" ? Math.trunc(x / y) : x % y;
    }],
  ];
  const level = (l: number): Val => {
    if (l === binary.length) return unary();
    let v = level(l + 1);
    while (at < toks.length && binary[l][0].includes(toks[at])) {
      const op = toks[at++];
      v = binary[l][1](v, level(l + 1), op);
    }
    return v;
  };
  const unary = (): Val => {
    const t = toks[at++];
    if (t === "!") return num(unary()) === 0;
    if (t === "-") return -num(unary());
    if (t === "(") {
      const v = level(0);
      if (toks[at++] !== ")") throw new Error(`template: missing ) in ${src}`);
      return v;
    }
    if (/^\d+$/.test(t)) return Number(t);
    if (t in env) return env[t];
    throw new Error(`template: unknown name ${t} in ${src}`);
  };
  const v = level(0);
  if (at !== toks.length) throw new Error(`template: trailing tokens in ${src}`);
  return v;
}

const KNOWN_SUB = /\{([A-Za-z0-9_+\-*/%()<>=!&|]+)\}/g;

function substitute(line: string, env: Env): string {
  return line.replace(KNOWN_SUB, (all, e: string) => {
    const names = e.match(/[A-Za-z_]\w*/g) ?? [];
    if (!names.every((n) => n in env)) return all;
    const v = evalExpr(e, env);
    return String(typeof v === "boolean" ? (v ? 1 : 0) : v);
  });
}

const ranges = (spec: string, env: Env): [string, number][] =>
  spec.split(",").map((part) => {
    const m = part.trim().match(/^(\w+) in (.+)$/);
    if (!m) throw new Error(`template: bad loop "${part}"`);
    return [m[1], Number(evalExpr(m[2], env))];
  });

const product = (rs: [string, number][], env: Env): Env[] => {
  let envs = [env];
  for (const [n, count] of rs) {
    envs = envs.flatMap((e) => Array.from({ length: count }, (_, v) => ({ ...e, [n]: v })));
  }
  return envs;
};

function run(lines: string[], env0: Env, defs: Map<string, string[]>, out: string[]): void {
  // Returns the index of the line that ended the block (//#end or //#else), or lines.length.
  const block = (start: number, env: Env, emit: boolean): number => {
    let j = start;
    while (j < lines.length) {
      const line = lines[j];
      const t = line.trim();
      let m: RegExpMatchArray | null;
      if (t === "//#end" || t === "//#else") return j;
      if ((m = t.match(/^\/\/#let (\w+) = (.+)$/))) {
        if (emit) env = { ...env, [m[1]]: evalExpr(m[2], env) };
        j++;
      } else if ((m = t.match(/^\/\/#use (\w+)$/))) {
        const d = defs.get(m[1]);
        if (!d) throw new Error(`template: //#use of undefined ${m[1]}`);
        if (emit) run(d, env, defs, out);
        j++;
      } else if ((m = t.match(/^\/\/#for (.+)$/))) {
        let end = j + 1;
        const envs = emit ? product(ranges(m[1], env), env) : [];
        if (envs.length === 0) end = block(j + 1, env, false);
        for (const e of envs) end = block(j + 1, e, true);
        j = end + 1;
      } else if ((m = t.match(/^\/\/#if (.+)$/))) {
        const cond = emit && Number(evalExpr(m[1], env)) !== 0;
        let end = block(j + 1, env, cond);
        if (lines[end]?.trim() === "//#else") end = block(end + 1, env, emit && !cond);
        j = end + 1;
      } else if ((m = line.match(/^(.*?)\s*\/\/#for (.+)$/))) {
        if (emit) {
          for (const e of product(ranges(m[2], env), env)) out.push(substitute(m[1], e));
        }
        j++;
      } else {
        if (emit) out.push(substitute(line, env));
        j++;
      }
    }
    return j;
  };
  const i = block(0, env0, true);
  if (i < lines.length) throw new Error(`template: unmatched ${lines[i].trim()}`);
}

/** Expand the directives and `{EXPR}` substitutions of a template (see above). */
export function expandTemplate(src: string, consts: Env): string {
  const defs = new Map<string, string[]>();
  const body: string[] = [];
  let cur: string[] | null = null;
  for (const line of src.split("\n")) {
    const t = line.trim();
    const m = t.match(/^\/\/#def (\w+)$/);
    if (m) {
      if (cur) throw new Error(`template: //#def ${m[1]} inside another //#def`);
      defs.set(m[1], cur = []);
    } else if (t === "//#enddef") {
      if (!cur) throw new Error("template: //#enddef without //#def");
      cur = null;
    } else (cur ?? body).push(line);
  }
  if (cur) throw new Error("template: //#def without //#enddef");
  const out: string[] = [];
  run(body, consts, defs, out);
  return out.join("\n");
}
