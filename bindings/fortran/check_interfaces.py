#!/usr/bin/env python3
"""Check the bind(C) interfaces of pasha.f90 against include/pasha/pasha.h.

Usage: check_interfaces.py HEADER FORTRAN_FILE

Every function of the header must have an interface with bind(C,
name='psh_...') whose result and arguments have the matching Fortran kind:
int, unsigned (no unsigned kinds in Fortran; same size) and enums ->
integer(c_int), value; size_t -> integer(c_size_t), value;
function pointers -> type(c_funptr), value; T ** -> type(c_ptr) by
reference; a pointer to an option struct -> type(<struct>) by reference;
size_t * -> integer(c_size_t) array or type(c_ptr), value; any other
pointer -> type(c_ptr), value; void -> subroutine. The PSH_* constants must
have the header's values. Exit status 1 and one line per problem otherwise.
Reuses the header parser of bindings/julia/check_ccalls.py.
"""
import os
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'julia'))
from check_ccalls import Header  # noqa: E402


def expected(h, ctype, is_result):
    base, depth = ctype
    if depth == 0 and base == 'void':
        return {'subroutine'}
    if depth == 0 and (base in h.funcptrs):
        return {'type(c_funptr),value'}
    if depth == 0 and (base in h.enums or base in ('int', 'unsigned')):
        return {'integer(c_int)' if is_result else 'integer(c_int),value'}
    if depth == 0 and base == 'size_t':
        return {'integer(c_size_t)' if is_result else 'integer(c_size_t),value'}
    if is_result:
        return {'type(c_ptr)'}
    if depth == 2:
        return {'type(c_ptr)'}
    if depth == 1 and base in h.structs:
        return {'type(%s)' % base, 'type(c_ptr),value'}
    if depth == 1 and base in ('size_t', 'ptrdiff_t'):
        return {'integer(c_%s)[]' % base, 'type(c_ptr),value'}
    return {'type(c_ptr),value'}


def parse_fortran(text):
    """name -> (result kind, [arg kinds]) for every bind(C, name=...) interface."""
    out = {}
    lines = [re.sub(r'!.*', '', l) for l in text.replace('&\n', ' ').splitlines()]
    i = 0
    while i < len(lines):
        m = re.match(r"\s*(?:(integer\(\w+\)|type\(\w+\))\s+)?(function|subroutine)\s+(\w+)\s*\(([^)]*)\)"
                     r"\s*bind\(C,\s*name='(\w+)'\)", lines[i], re.I)
        if not m:
            i += 1
            continue
        result = m.group(1).lower().replace(' ', '') if m.group(1) else 'subroutine'
        args = [a.strip().lower() for a in m.group(4).split(',') if a.strip()]
        decls = {}
        i += 1
        while not re.match(r'\s*end\s+(function|subroutine)', lines[i], re.I):
            d = re.match(r'\s*([^:]+?)\s*::\s*(.+)$', lines[i])
            if d and not d.group(1).strip().lower().startswith('import'):
                attrs = [a.strip().lower().replace(' ', '') for a in d.group(1).split(',')]
                for name in d.group(2).split(','):
                    nm = re.match(r'\s*(\w+)\s*(\(.*\))?', name)
                    kind = attrs[0]
                    if nm.group(2):
                        kind += '[]'
                    if 'value' in attrs:
                        kind += ',value'
                    decls[nm.group(1).lower()] = kind
            i += 1
        out[m.group(5)] = (result, [decls.get(a, '?') for a in args])
    return out


def check(header_text, fortran_text):
    h = Header(header_text)
    f = parse_fortran(fortran_text)
    problems = []
    for name, (cret, cargs) in sorted(h.functions.items()):
        if name not in f:
            problems.append('no interface for %s' % name)
            continue
        fret, fargs = f[name]
        if fret not in expected(h, cret, True):
            problems.append('%s returns %s in C, %s in Fortran' % (name, cret, fret))
        if len(fargs) != len(cargs):
            problems.append('%s takes %d arguments in C, %d in Fortran' % (name, len(cargs), len(fargs)))
            continue
        for k, (fa, ca) in enumerate(zip(fargs, cargs)):
            ok = expected(h, ca, False)
            if fa not in ok:
                problems.append('%s argument %d is %s in C, %s in Fortran (expected one of %s)'
                                % (name, k + 1, ca, fa, sorted(ok)))
    for name in sorted(set(f) - set(h.functions)):
        problems.append('%s is not declared in the header' % name)
    consts = {}
    for m in re.finditer(r'(PSH_\w+)\s*=\s*(-?\d+)', fortran_text):
        consts[m.group(1)] = int(m.group(2))
    for name, value in sorted(h.constants.items()):
        if consts.get(name) != value:
            problems.append('%s is %d in the header, %s in Fortran' % (name, value, consts.get(name)))
    return problems, len(h.functions)


def main(argv):
    if len(argv) != 3:
        print('usage: check_interfaces.py HEADER FORTRAN_FILE', file=sys.stderr)
        return 2
    with open(argv[1]) as fh:
        header = fh.read()
    with open(argv[2]) as ff:
        fortran = ff.read()
    problems, n = check(header, fortran)
    for p in problems:
        print(p)
    if problems:
        print('FAIL: %d problem(s)' % len(problems))
        return 1
    print('OK: %d interfaces match %s' % (n, argv[1]))
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
