#!/usr/bin/python3
"""layering.py - the layering check of libkm (run by tests/layering.sh).

Reads every .c/.h file under the roots named in the map (tests/layers.map),
gives each file a layer from the map, and checks three kinds of edges:

  include  an #include "..." line, resolved to a file of the tree;
  call     a use of a km__ name (a call, a function passed as a pointer, an
           extern variable) resolved, through a scan of every definition, to
           the file that defines it;
  openssl  an #include <openssl/...> or an OpenSSL identifier (EVP_..., BN_...)
           in a file where OpenSSL is not allowed;

and, within one layer, cycles between files (call and include edges).
The rules themselves are in layer_allows() below and in docs/ARCHITECTURE.md.

Every violation is one line "FILE KIND TARGET". The check fails on a
violation that is not in the debt file (tests/layers.debt) and on a debt line
that no longer occurs, so the debt can only shrink and stays true.

Standard library only. Options:
  --root DIR     the source tree (default: $top_srcdir or .)
  --map FILE     the layer map (default: ROOT/tests/layers.map)
  --debt FILE    the debt file (default: ROOT/tests/layers.debt)
  --print-debt   print the current violations in debt-file form and exit 0
  --verbose      also list the warnings (cycles in core, api, backends)
"""
import os
import re
import sys

ORDER = {"primitives": 1, "store": 2, "rules": 3, "core": 4, "api": 5}
SIDE = ("backends", "tools", "daemon", "public", "tests")
# the one module of a lower layer a daemon (kmd) may use: the KMIP TTLV codec
DAEMON_OK = ("src/prim/kmip_ttlv.c", "src/prim/kmip_ttlv.h")

OPENSSL_ID = re.compile(
    r"\b(?:EVP|OSSL|BN|EC|ECDSA|ECDH|RSA|DH|DSA|ERR|RAND|OPENSSL|CRYPTO|PEM|X509|ASN1|BIO|"
    r"HMAC|CMAC|PKCS5|PKCS7|PKCS8|PKCS12|SHA1|SHA224|SHA256|SHA384|SHA512|MD5|OBJ|ENGINE|"
    r"d2i|i2d|UI|CONF|OBJ)_[A-Za-z0-9_]+")
KM_ID = re.compile(r"\bkm__[A-Za-z0-9_]+")
INCLUDE = re.compile(r'^[ \t]*#[ \t]*include[ \t]*([<"])([^">]+)[">]', re.M)



def same_module(a, b):
    """x.c and x.h are one module (a header's inline functions read its .c's
    data): an edge between them is no cycle between files."""
    return os.path.splitext(a)[0] == os.path.splitext(b)[0]

def die(msg):
    sys.stderr.write("layering: %s\n" % msg)
    sys.exit(2)


# ----------------------------------------------------------------- the map

def glob_re(pat):
    """A path glob: ** matches across '/', * and ? do not."""
    out, i = "", 0
    while i < len(pat):
        c = pat[i]
        if pat.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
            continue
        if pat.startswith("**", i):
            out += ".*"
            i += 2
            continue
        out += "[^/]*" if c == "*" else "[^/]" if c == "?" else re.escape(c)
        i += 1
    return re.compile(out + r"\Z")


class Map:
    def __init__(self, path):
        self.roots, self.layers, self.pure_files, self.pure_names = [], [], [], set()
        self.openssl, self.includes = [], []
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                line = line.split("#", 1)[0].split()
                if not line:
                    continue
                key, args = line[0], line[1:]
                if not args:
                    die("%s:%d: '%s' needs arguments" % (path, n, key))
                if key == "roots":
                    self.roots += args
                elif key == "includes":
                    self.includes += args
                elif key == "pure":
                    for a in args:
                        if a.startswith("km__"):
                            self.pure_names.add(a)
                        else:
                            self.pure_files.append(glob_re(a))
                elif key == "openssl":
                    self.openssl += args
                else:
                    base = key.split(":", 1)[0]
                    if base not in ORDER and base not in SIDE:
                        die("%s:%d: unknown layer '%s'" % (path, n, key))
                    for a in args:
                        self.layers.append((glob_re(a), key))
        if not self.roots:
            die("%s: no 'roots' line" % path)
        if not self.includes:
            self.includes = ["include", "src"]

    def layer(self, rel):
        for rx, name in self.layers:          # first match wins
            if rx.match(rel):
                return name
        return None

    def openssl_ok(self, rel, layer):
        for a in self.openssl:
            if a == layer or a == layer.split(":", 1)[0] or ("/" in a and glob_re(a).match(rel)):
                return True
        return False

    def pure(self, rel, name):
        return name in self.pure_names or any(rx.match(rel) for rx in self.pure_files)


def base(layer):
    return layer.split(":", 1)[0]


def layer_allows(src, dst, kind, pure, dst_file=None):
    """May a file of layer src include (kind 'include') or use (kind 'call')
    something of layer dst (defined in dst_file)? pure: the target is one of
    primitives' pure helpers."""
    if src == dst or base(src) == "tests":
        return True
    s, d = base(src), base(dst)
    if d == "public":                   # installed headers: anyone
        return True
    if s == "public":
        return False
    if s == "daemon":                   # kmd: public headers and the KMIP codec only
        return d == "primitives" and dst_file in DAEMON_OK
    if s == "tools":                    # kmctl, examples, bindings: public headers only
        return False
    if s == "backends":                 # the backend interface, primitives, their own directory
        return d == "primitives"
    if d == "tests" or d == "tools" or d == "daemon":
        return False
    if s == "rules":                    # pure decisions: primitives' pure helpers only
        return d == "rules" or (d == "primitives" and (kind == "include" or pure))
    if d == "backends":                 # core and api register and dispatch to backends
        return s in ("core", "api")
    if d == "rules":                    # store and primitives never decide
        return s in ("core", "api")
    return ORDER[d] <= ORDER[s]


# ------------------------------------------------------------- the lexer

def strip(text):
    """Comments and string/char literals blanked, newlines kept."""
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if c == "/" and i + 1 < n and text[i + 1] == "*":
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        elif c == "/" and i + 1 < n and text[i + 1] == "/":
            j = text.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i))
            i = j
        elif c in "\"'":
            j = i + 1
            while j < n and text[j] != c and text[j] != "\n":
                j += 2 if text[j] == "\\" else 1
            j = min(j + 1, n)
            out.append(c + re.sub(r"[^\n]", " ", text[i + 1:j - 1]) + c if j - i >= 2 else text[i:j])
            i = j
        else:
            out.append(c)
            i += 1
    return "".join(out)


def split_pp(text):
    """(code, pp): preprocessor lines (with continuations) blanked in code,
    and only those lines kept in pp; both keep every offset of text."""
    code, pp, in_pp = [], [], False
    for line in text.split("\n"):
        if in_pp or line.lstrip().startswith("#"):
            pp.append(line)
            code.append(" " * len(line))
            in_pp = line.endswith("\\")
        else:
            pp.append(" " * len(line))
            code.append(line)
    return "\n".join(code), "\n".join(pp)


def line_of(text, pos):
    return text.count("\n", 0, pos) + 1


def match_paren(text, i):
    """text[i] == '(' : index just past the matching ')'."""
    depth = 0
    while i < len(text):
        if text[i] == "(":
            depth += 1
        elif text[i] == ")":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return i


ATTR = re.compile(r"\s*(?:__attribute__\s*\(|KM_EXTERN\b|KM_WUR\b|const\b)")


def scan_code(code):
    """Definitions and uses of km__ names in code (preprocessor lines blanked).
    Returns (defs {name: (static, line)}, uses [(name, pos)])."""
    defs, uses = {}, []
    depth, stmt_start, i, n = 0, 0, 0, len(code)
    token = re.compile(r"[{};]|\bkm__[A-Za-z0-9_]+")
    body = False                    # the open depth-0 brace is a function body
    for m in token.finditer(code):
        t = m.group(0)
        if t == "{":
            if depth == 0:
                body = code[:m.start()].rstrip().endswith(")")
            depth += 1
            continue
        if t == "}":
            depth = max(depth - 1, 0)
            if depth == 0 and body:
                stmt_start = m.end()          # end of a function body
            continue
        if t == ";":
            if depth == 0:
                stmt_start = m.end()
            continue
        if depth > 0:
            uses.append((t, m.start()))
            continue
        # file scope: a definition, a prototype, an extern declaration or a type name
        stmt = code[stmt_start:m.start()]
        rest = code[m.end():]
        k = len(rest) - len(rest.lstrip())
        nxt = rest[k:k + 1]
        if re.search(r"\btypedef\b", stmt) or re.search(r"\b(?:struct|union|enum)\s*$", stmt):
            continue
        if nxt == "(":
            if re.search(r"\(\s*\*?\s*$", stmt):      # (*name)(...): pointer declarator
                continue
            j = match_paren(code, m.end() + k)
            while True:
                a = ATTR.match(code, j)
                if not a:
                    break
                j = a.end()
                if code[j - 1] == "(":
                    j = match_paren(code, j - 1)
            after = code[j:].lstrip()[:1]
            if after == "{":
                defs[t] = (bool(re.search(r"\bstatic\b", stmt)), line_of(code, m.start()))
            elif after not in (";", ","):
                uses.append((t, m.start()))           # a call in a file-scope initialiser
            continue
        if nxt in ("=", ";", "[", ",") and not re.search(r"\bextern\b", stmt):
            if re.search(r"[A-Za-z_]\s*\**\s*$", stmt):   # type then name: a variable
                defs[t] = (bool(re.search(r"\bstatic\b", stmt)), line_of(code, m.start()))
                continue
        if not re.search(r"\bextern\b", stmt) and nxt not in ("=", ";", "[", ","):
            uses.append((t, m.start()))
    return defs, uses


def scan_pp(pp):
    """Macros named km__ (definitions) and km__ names used in macro bodies."""
    defs, uses = {}, []
    for m in re.finditer(r"^[ \t]*#[ \t]*define[ \t]+(km__[A-Za-z0-9_]+)", pp, re.M):
        defs[m.group(1)] = (False, line_of(pp, m.start()))
    for m in re.finditer(r"^[ \t]*#[ \t]*define[ \t]+[A-Za-z0-9_]+(?:\([^)]*\))?(.*(?:\\\n.*)*)",
                         pp, re.M):
        for u in KM_ID.finditer(m.group(1)):
            uses.append((u.group(0), m.start(1) + u.start()))
    return defs, uses


# -------------------------------------------------------------- the tree

class File:
    def __init__(self, rel, layer, raw):
        self.rel, self.layer = rel, layer
        text = strip(raw)
        self.code, self.pp = split_pp(text)
        # the stripped text blanks the "..." of includes: names from the raw text
        self.includes = [(m.group(1), m.group(2), line_of(raw, m.start()))
                         for m in INCLUDE.finditer(raw)
                         if not in_comment(text, raw, m.start())]
        d1, u1 = scan_code(self.code)
        d2, u2 = scan_pp(self.pp)
        self.defs = dict(d1)
        self.defs.update(d2)
        self.uses = [(name, line_of(text, pos)) for name, pos in u1 + u2]
        self.macros = set(re.findall(r"^[ \t]*#[ \t]*define[ \t]+([A-Za-z0-9_]+)", self.pp, re.M))
        self.ossl = [(m.group(0), line_of(text, m.start())) for m in OPENSSL_ID.finditer(self.code)]


def in_comment(stripped, raw, pos):
    """The #include at pos was blanked (inside a comment)."""
    return stripped[pos] != raw[pos]


def walk(root, m):
    files = []
    for r in m.roots:
        top = os.path.join(root, r)
        if not os.path.isdir(top):
            continue
        for d, dirs, names in os.walk(top):
            dirs.sort()
            for nm in sorted(names):
                if nm.endswith((".c", ".h")):
                    files.append(os.path.relpath(os.path.join(d, nm), root).replace(os.sep, "/"))
    return files


def resolve_include(rel, name, byrel, bybase, incdirs):
    """As the compiler does: next to the including file, then in each of the
    map's include directories; failing that, the only file of that name."""
    for cand in [os.path.join(os.path.dirname(rel), name)] + [d + "/" + name for d in incdirs]:
        cand = os.path.normpath(cand).replace(os.sep, "/")
        if cand in byrel:
            return cand
    hits = bybase.get(os.path.basename(name), [])
    return hits[0] if len(hits) == 1 else None


def sccs(nodes, edges):
    """Tarjan: the strongly connected components with more than one file."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        work = [(v, iter(sorted(edges.get(v, ()))))]
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        while work:
            u, it = work[-1]
            advanced = False
            for w in it:
                if w not in index:
                    index[w] = low[w] = counter[0]
                    counter[0] += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(edges.get(w, ())))))
                    advanced = True
                    break
                elif w in on:
                    low[u] = min(low[u], index[w])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[u])
            if low[u] == index[u]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == u:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))

    for v in sorted(nodes):
        if v not in index:
            visit(v)
    return out


def main(argv):
    root = os.environ.get("top_srcdir", ".")
    mapf = debtf = None
    print_debt = verbose = False
    args = list(argv)
    while args:
        a = args.pop(0)
        if a in ("--root", "--map", "--debt") and args:
            v = args.pop(0)
            if a == "--root":
                root = v
            elif a == "--map":
                mapf = v
            else:
                debtf = v
        elif a == "--print-debt":
            print_debt = True
        elif a == "--verbose":
            verbose = True
        else:
            die("unknown argument %s (see the top of tests/layering.py)" % a)
    mapf = mapf or os.path.join(root, "tests", "layers.map")
    debtf = debtf or os.path.join(root, "tests", "layers.debt")
    m = Map(mapf)

    files, unmapped = {}, []
    for rel in walk(root, m):
        layer = m.layer(rel)
        if layer is None:
            unmapped.append(rel)
            continue
        if layer == "tests":
            continue
        with open(os.path.join(root, rel), encoding="utf-8", errors="replace") as f:
            files[rel] = File(rel, layer, f.read())
    bybase = {}
    for rel in files:
        bybase.setdefault(os.path.basename(rel), []).append(rel)

    definers, macros = {}, set()
    for f in files.values():
        macros |= f.macros
        for name, (static, _) in f.defs.items():
            if not static or f.rel.endswith(".h"):   # a header's static inline: its includers
                definers.setdefault(name, []).append(f.rel)

    viol = {}      # (file, kind, target) -> first message
    warnings, graph, nedges = [], {}, {"include": 0, "call": 0}

    def add(f, kind, target, line, why):
        key = (f.rel, kind, target)
        if key not in viol:
            where = "%s:%d" % (f.rel, line) if line else f.rel
            viol[key] = "%s: %s %s: %s" % (where, kind, target, why)

    for f in sorted(files.values(), key=lambda x: x.rel):
        seen = set()
        for delim, name, line in f.includes:
            if delim == "<":
                if name.startswith("openssl/") and not m.openssl_ok(f.rel, f.layer):
                    add(f, "openssl", "<%s>" % name, line,
                        "OpenSSL is allowed only in %s" % ", ".join(m.openssl))
                continue
            tgt = resolve_include(f.rel, name, files, bybase, m.includes)
            if tgt is None:
                if name != "config.h":
                    warnings.append("%s:%d: include \"%s\" not found in the tree" % (f.rel, line, name))
                continue
            if tgt in seen:
                continue
            seen.add(tgt)
            nedges["include"] += 1
            dl = files[tgt].layer
            # an include of a header is no call: cycles are found on calls
            # (a header's inline functions are calls from the header)
            if dl == f.layer and tgt != f.rel and not same_module(f.rel, tgt) \
                    and not tgt.endswith(".h"):
                graph.setdefault(f.rel, set()).add(tgt)
            if not layer_allows(f.layer, dl, "include", False, tgt):
                add(f, "include", tgt, line, "%s may not include %s (%s)" % (f.layer, tgt, dl))
        for name, line in f.uses:
            if name in f.defs:
                continue                        # its own (static or not)
            for tgt in definers.get(name, ()):
                if (name, tgt) in seen:
                    continue
                seen.add((name, tgt))
                nedges["call"] += 1
                dl = files[tgt].layer
                if dl == f.layer and not same_module(f.rel, tgt):
                    graph.setdefault(f.rel, set()).add(tgt)
                if not layer_allows(f.layer, dl, "call", m.pure(tgt, name), tgt):
                    what = "%s (%s, not a pure helper)" % (tgt, dl) \
                        if base(f.layer) == "rules" and base(dl) == "primitives" else "%s (%s)" % (tgt, dl)
                    add(f, "call", name, line, "%s may not use %s, defined in %s" % (f.layer, name, what))
        if not m.openssl_ok(f.rel, f.layer):
            for ident, line in f.ossl:
                if ident in macros:
                    continue                    # the project's own name
                add(f, "openssl", ident, line, "OpenSSL is allowed only in %s" % ", ".join(m.openssl))

    for comp in sccs(list(files), graph):
        layer = files[comp[0]].layer
        text = "cycle in %s: %s" % (layer, " ".join(comp))
        if base(layer) in ("rules", "primitives"):
            f = files[comp[0]]
            add(f, "cycle", ",".join(comp[1:]), 0, "files of %s call each other (%s)" % (layer, text))
        else:
            warnings.append("warning: " + text)

    if print_debt:
        print("# tests/layers.debt - violations of the layering that exist today; see")
        print("# docs/ARCHITECTURE.md. One per line: FILE KIND TARGET. Only ever remove lines.")
        for key in sorted(viol):
            print(" ".join(key))
        return 0

    debt = set()
    if os.path.exists(debtf):
        with open(debtf, encoding="utf-8") as f:
            for line in f:
                w = line.split("#", 1)[0].split()
                if w:
                    if len(w) != 3:
                        die("%s: bad line '%s' (FILE KIND TARGET)" % (debtf, line.strip()))
                    debt.add(tuple(w))
    new = sorted(k for k in viol if k not in debt)
    stale = sorted(k for k in debt if k not in viol)
    for rel in unmapped:
        print("layering: %s has no layer: add it to %s" % (rel, os.path.relpath(mapf, root)))
    for k in new:
        print("layering: VIOLATION %s" % viol[k])
    for k in stale:
        print("layering: FIXED, remove from %s: %s" % (os.path.relpath(debtf, root), " ".join(k)))
    if verbose or new:
        for w in warnings:
            print("layering: " + w)
    kinds = {}
    for k in viol:
        kinds[k[1]] = kinds.get(k[1], 0) + 1
    print("layering: %d files checked, %d edges checked (%d include, %d call), %d violations "
          "(%s), %d new, debt left %d, %d stale debt lines, %d warnings"
          % (len(files), sum(nedges.values()), nedges["include"], nedges["call"], len(viol),
             " ".join("%s %d" % kv for kv in sorted(kinds.items())) or "none", len(new),
             len(debt) - len(stale), len(stale), len(warnings)))
    return 1 if new or stale or unmapped else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
