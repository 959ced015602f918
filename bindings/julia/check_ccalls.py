#!/usr/bin/env python3
"""Check Pasha.jl's ccalls against include/pasha/pasha.h.

Usage: check_ccalls.py HEADER JULIA_FILE

Parses the real header (prototypes, typedefs, enums, struct fields) and every
`ccall((:name, lib), Ret, (Args...,), ...)` in the Julia file, and fails (exit
status 1, one line per problem) when:
  - a ccall names a function the header does not declare, or the header
    declares one no ccall wraps;
  - a return type or an argument type does not match the C type, or the
    number of argument types (or of arguments passed) differs;
  - a Julia `const PSH_X = Cint(v)` disagrees with the header's enum value,
    or a header enumerator has no such constant;
  - a Julia struct named after a C struct has different fields or types.

C to Julia: int and enum typedefs -> Cint, size_t -> Csize_t, ptrdiff_t ->
Cptrdiff_t, void -> Cvoid, char -> Cchar, function-pointer typedefs ->
Ptr{Cvoid}; a pointer T* -> Ptr{J(T)}, Ref{J(T)} (arguments only) or
Ptr{Cvoid}; char* -> also Cstring; an opaque struct -> Cvoid. Standard
library only.
"""
import re
import sys

BASE = {
    'int': 'Cint', 'unsigned': 'Cuint', 'long': 'Clong', 'char': 'Cchar', 'void': 'Cvoid',
    'size_t': 'Csize_t', 'ptrdiff_t': 'Cptrdiff_t', 'double': 'Cdouble', 'float': 'Cfloat',
}


def strip_comments(text):
    text = re.sub(r'/\*.*?\*/', ' ', text, flags=re.S)
    return re.sub(r'//[^\n]*', ' ', text)


class Header:
    """The declarations of a C header that a binding must match."""

    def __init__(self, text):
        text = strip_comments(text)
        text = re.sub(r'^\s*#.*$', ' ', text, flags=re.M)
        text = text.replace('PSH_API', ' ')
        self.enums = set()     # typedef'd enum names
        self.opaque = set()    # opaque struct typedefs
        self.structs = {}      # name -> [(field, ctype)]
        self.funcptrs = set()  # function-pointer typedefs
        self.constants = {}    # enumerator -> value
        self.functions = {}    # name -> (ret ctype, [arg ctypes])
        for body, name in re.findall(r'typedef\s+enum\s*\w*\s*\{(.*?)\}\s*(\w+)\s*;', text, re.S):
            self.enums.add(name)
            self._enumerators(body)
        for body in re.findall(r'(?<!typedef)\s+enum\s*\{(.*?)\}\s*;', text, re.S):
            self._enumerators(body)
        for name in re.findall(r'typedef\s+struct\s+\w+\s+(\w+)\s*;', text):
            self.opaque.add(name)
        for body, name in re.findall(r'typedef\s+struct\s*\w*\s*\{(.*?)\}\s*(\w+)\s*;', text, re.S):
            self.structs[name] = self._fields(body)
        for name in re.findall(r'typedef\s+[\w\s\*]+?\(\s*\*\s*(\w+)\s*\)\s*\(', text):
            self.funcptrs.add(name)
        # Prototypes: what remains outside typedefs and braces.
        flat = re.sub(r'typedef[^;{]*\{.*?\}[^;]*;', ' ', text, flags=re.S)
        flat = re.sub(r'typedef[^;]*;', ' ', flat)
        flat = re.sub(r'enum\s*\{.*?\}\s*;', ' ', flat, flags=re.S)
        flat = flat.replace('extern "C" {', ' ')
        for m in re.finditer(r'([\w\s\*]+?)\b(psh_\w+)\s*\(([^;{}]*?)\)\s*;', flat):
            ret, name, args = m.group(1), m.group(2), m.group(3)
            self.functions[name] = (self._ctype(ret), self._args(args))

    def _enumerators(self, body):
        value = -1
        for item in body.split(','):
            item = item.strip()
            if not item:
                continue
            m = re.match(r'(\w+)\s*(?:=\s*(-?\s*\d+))?$', item)
            if not m:
                raise ValueError('cannot parse enumerator %r' % item)
            value = int(m.group(2).replace(' ', '')) if m.group(2) else value + 1
            self.constants[m.group(1)] = value

    def _fields(self, body):
        fields = []
        for decl in body.split(';'):
            decl = ' '.join(decl.split())
            if not decl:
                continue
            fp = re.match(r'(.+?)\(\s*\*\s*(\w+)\s*\)\s*\(.*\)$', decl)
            if fp:
                fields.append((fp.group(2), ('<funcptr>', 0)))
                continue
            m = re.match(r'(.+?)(\w+)$', decl)
            fields.append((m.group(2), self._ctype(m.group(1))))
        return fields

    def _args(self, args):
        args = ' '.join(args.split())
        if args in ('', 'void'):
            return []
        out = []
        for a in args.split(','):
            a = a.strip()
            m = re.match(r'(.*?[\s\*])(\w+)$', a)
            out.append(self._ctype(m.group(1) if m else a))
        return out

    @staticmethod
    def _ctype(decl):
        """'const size_t *' -> ('size_t', 1): base type and pointer depth."""
        stars = decl.count('*')
        words = [w for w in decl.replace('*', ' ').split()
                 if w not in ('const', 'volatile', 'struct', 'enum')]
        return (' '.join(words), stars)

    def julia_types(self, ctype, arg):
        """The set of Julia type spellings that match a C type."""
        base, depth = ctype
        if base == '<funcptr>' or base in self.funcptrs:
            if depth == 0:
                return {'Ptr{Cvoid}'}
            base, depth = '<funcptr>', depth  # pointer to function pointer
            inner = {'Ptr{Cvoid}'}
            for _ in range(depth):
                inner = self._wrap(inner, arg)
            return inner
        if depth == 0:
            if base in self.enums:
                return {'Cint'}
            if base in BASE:
                return {BASE[base]}
            if base in self.opaque:
                return {'Cvoid'}
            if base in self.structs:
                return {base}
            raise ValueError('no Julia mapping for C type %r' % base)
        inner = self.julia_types((base, depth - 1), arg)
        out = self._wrap(inner, arg)
        if base == 'char' and depth == 1:
            out |= {'Cstring', 'Ptr{UInt8}'}
        return out

    @staticmethod
    def _wrap(inner, arg):
        out = {'Ptr{Cvoid}'}
        for t in inner:
            out.add('Ptr{%s}' % t)
            if arg:
                out.add('Ref{%s}' % t)
        return out


def split_top(text, sep=','):
    """Split at top-level separators (outside (), {}, [] and strings)."""
    parts, depth, cur, quote = [], 0, [], None
    for ch in text:
        if quote:
            cur.append(ch)
            if ch == quote:
                quote = None
            continue
        if ch in '"\'':
            quote = ch
        elif ch in '([{':
            depth += 1
        elif ch in ')]}':
            depth -= 1
        if ch == sep and depth == 0:
            parts.append(''.join(cur))
            cur = []
        else:
            cur.append(ch)
    if ''.join(cur).strip():
        parts.append(''.join(cur))
    return [p.strip() for p in parts]


def find_ccalls(text):
    """Yield (line, body) for every ccall(...) in Julia source."""
    text = re.sub(r'#=.*?=#', lambda m: ' ' * len(m.group(0)), text, flags=re.S)
    text = re.sub(r'#[^\n]*', lambda m: ' ' * len(m.group(0)), text)
    for m in re.finditer(r'\bccall\s*\(', text):
        i, depth = m.end(), 1
        while depth and i < len(text):
            depth += {'(': 1, ')': -1}.get(text[i], 0)
            i += 1
        yield text.count('\n', 0, m.start()) + 1, text[m.end():i - 1]


def norm(t):
    return re.sub(r'\s+', '', t)


def check(header_text, julia_text, julia_name='Pasha.jl'):
    """All the problems found, as a list of strings."""
    h = Header(header_text)
    problems, seen = [], set()
    for line, body in find_ccalls(julia_text):
        where = '%s:%d' % (julia_name, line)
        parts = split_top(body)
        if len(parts) < 3:
            problems.append('%s: cannot parse ccall(%s)' % (where, body))
            continue
        target = re.match(r'\(\s*:(\w+)\s*,', parts[0])
        if not target:
            problems.append('%s: ccall target %s is not (:name, lib)' % (where, parts[0]))
            continue
        name = target.group(1)
        seen.add(name)
        if name not in h.functions:
            problems.append('%s: %s is not declared in the header' % (where, name))
            continue
        cret, cargs = h.functions[name]
        ret = norm(parts[1])
        ok = h.julia_types(cret, arg=False)
        if ret not in ok:
            problems.append('%s: %s returns %s in C, the ccall says %s (expected one of %s)'
                            % (where, name, cret, ret, sorted(ok)))
        tup = parts[2].strip()
        if not (tup.startswith('(') and tup.endswith(')')):
            problems.append('%s: %s: argument types %s are not a tuple' % (where, name, tup))
            continue
        jargs = [norm(a) for a in split_top(tup[1:-1])]
        if len(jargs) != len(cargs):
            problems.append('%s: %s takes %d arguments in C, the ccall lists %d types'
                            % (where, name, len(cargs), len(jargs)))
            continue
        if len(parts) - 3 != len(cargs):
            problems.append('%s: %s takes %d arguments, the ccall passes %d'
                            % (where, name, len(cargs), len(parts) - 3))
        for k, (j, c) in enumerate(zip(jargs, cargs)):
            ok = h.julia_types(c, arg=True)
            if j not in ok:
                problems.append('%s: %s argument %d is %s in C, the ccall says %s (expected one of %s)'
                                % (where, name, k + 1, c, j, sorted(ok)))
    for name in sorted(set(h.functions) - seen):
        problems.append('%s: no ccall wraps %s' % (julia_name, name))

    consts = {m.group(1): int(m.group(2)) for m in
              re.finditer(r'^\s*const\s+(PSH_\w+)\s*=\s*Cint\(\s*(-?\d+)\s*\)', julia_text, re.M)}
    for name, value in sorted(h.constants.items()):
        if name not in consts:
            problems.append('%s: no constant %s (= %d)' % (julia_name, name, value))
        elif consts[name] != value:
            problems.append('%s: %s is %d in the header, %d in Julia' % (julia_name, name, value, consts[name]))
    for name in sorted(set(consts) - set(h.constants)):
        problems.append('%s: constant %s is not in the header' % (julia_name, name))

    for m in re.finditer(r'^\s*(?:mutable\s+)?struct\s+(psh_\w+)\s*\n(.*?)^\s*end\b', julia_text, re.M | re.S):
        name, body = m.group(1), m.group(2)
        if name not in h.structs:
            problems.append('%s: struct %s is not in the header' % (julia_name, name))
            continue
        jfields = re.findall(r'^\s*(\w+)\s*::\s*(\S+)\s*$', body, re.M)
        cfields = h.structs[name]
        if [f for f, _ in jfields] != [f for f, _ in cfields]:
            problems.append('%s: struct %s has fields %s, the header %s'
                            % (julia_name, name, [f for f, _ in jfields], [f for f, _ in cfields]))
            continue
        for (f, jt), (_, ct) in zip(jfields, cfields):
            ok = {t for t in h.julia_types(ct, arg=False) if not t.startswith('Ref')}
            if norm(jt) not in ok:
                problems.append('%s: %s.%s is %s in C, %s in Julia (expected one of %s)'
                                % (julia_name, name, f, ct, jt, sorted(ok)))
    for name in sorted(set(h.structs) - {m.group(1) for m in re.finditer(
            r'^\s*(?:mutable\s+)?struct\s+(psh_\w+)', julia_text, re.M)}):
        problems.append('%s: no Julia struct mirrors %s' % (julia_name, name))
    return problems, h


def main(argv):
    if len(argv) != 3:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    with open(argv[1]) as f:
        header = f.read()
    with open(argv[2]) as f:
        julia = f.read()
    problems, h = check(header, julia, argv[2])
    for p in problems:
        print(p)
    if problems:
        print('FAIL: %d problem(s) between %s and %s' % (len(problems), argv[2], argv[1]))
        return 1
    print('OK: %d functions, %d constants, %d structs match %s'
          % (len(h.functions), len(h.constants), len(h.structs), argv[1]))
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
