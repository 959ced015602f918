#!/usr/bin/env python3
"""Check the hand-written bindings against include/pasha/*.h, read by a real
C parser (libclang's Python bindings, PyPI `libclang`).

Usage: bindcheck.py [--root DIR] [--fortran F90...] [--fortran-mpi F90 SHIM.c]
                    [--julia JL] [--python DIR] [all]

With no option (or `all`) every binding of the source tree DIR (default: the
checkout this file is in) is checked:

  fortran  bindings/fortran/pasha.f90: one bind(C, name='psh_...') interface
           per function of pasha.h, its result and arguments of the matching
           kinds and value-ness; the PSH_* constants (and the version
           macros it mirrors) with the header's values; each
           `type, bind(C)` named after a C struct: field names, kinds,
           offsets and size. bindings/fortran/mpi/pasha_mpi.f90 likewise against
           pasha_mpi.h, where a function taking an MPI_Comm is reached
           through the C shim (pasha_mpi_shim.c, parsed too).
  julia    bindings/julia/src/Pasha.jl, parsed with tree-sitter-julia: every
           ccall's function, return type, argument types and argument count;
           one ccall per header function; the `const PSH_X = Cint(v)`
           constants; each Julia struct named after a C struct: field names,
           types, offsets and the struct's size (computed with the C layout
           rules from the Julia types) against the header's (from libclang).
  python   the PSH_* values the Python package uses: the extension's
           PyModule_AddIntConstant(m, "X", PSH_Y) calls (bindings/python/
           src/pasha/*.c, parsed with libclang) must name header constants,
           with X == Y minus "PSH_"; module-level integers in the package's
           .py files that mirror a header constant (`_SCHEDULE_CONTEXT = -1`
           for PSH_SCHEDULE_CONTEXT, `_SERIAL, _THREADS = 0, 1`, a dict
           `_SCHEDULES = {'static': 0, ...}` for PSH_SCHEDULE_STATIC, ...)
           must have its value.

Exit status 0 when everything matches, 1 with one line per difference
(naming the function, field or constant), 2 for a usage error or a missing
parser (pip install -r tools/deps/bindcheck.pip).
"""
import argparse
import ast
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile

try:
    import clang.cindex as ci
except ImportError:  # pragma: no cover - reported in main()
    ci = None

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, '..', '..'))

# An MPI stand-in, so that pasha_mpi.h parses without an MPI installation:
# only the names the header and the Fortran shim use.
FAKE_MPI_H = '''
typedef struct psh_fake_mpi_comm *MPI_Comm;
typedef int MPI_Fint;
int MPI_Initialized(int *flag);
int MPI_Finalized(int *flag);
MPI_Comm MPI_Comm_f2c(MPI_Fint comm);
extern MPI_Comm psh_fake_mpi_comm_self;
#define MPI_COMM_SELF psh_fake_mpi_comm_self
'''


# ---------------------------------------------------------------------------
# The C side, through libclang
# ---------------------------------------------------------------------------

def _builtin_include():
    """The compiler's own headers (stddef.h): the libclang wheel has none."""
    for cc in (os.environ.get('CC'), 'cc', 'gcc', 'clang'):
        if not cc or not shutil.which(cc):
            continue
        try:
            out = subprocess.run([cc, '-print-file-name=include'], capture_output=True, text=True,
                                 check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            continue
        if os.path.isfile(os.path.join(out, 'stddef.h')):
            return out
    return None


class CParseError(Exception):
    pass


class Header:
    """What the bindings must match, from the parsed headers.

    Types are (base, depth): base a C builtin ('int', 'unsigned', 'long long',
    'size_t', 'ptrdiff_t', 'char', 'void', 'double', ...), the name of an enum
    typedef (in enums), of an opaque struct (in opaque), of a defined struct
    (in structs), of a function-pointer typedef (in funcptrs) or '<funcptr>';
    depth the number of pointers."""

    def __init__(self, files, include_dirs=(), extra_sources=(), source_text=None):
        if ci is None:
            raise CParseError('libclang is not installed (pip install -r tools/deps/bindcheck.pip)')
        self.enums = set()
        self.opaque = set()
        self.structs = {}      # name -> [(field, ctype, offset)]
        self.struct_size = {}  # name -> bytes
        self.funcptrs = set()
        self.constants = {}    # enumerator -> value
        self.functions = {}    # name -> (ret ctype, [arg ctypes])
        self.origin = {}       # function or constant -> basename of its header
        self.macros = {}       # PSH_* macro -> int or str (simple #defines only)
        self._tmp = tempfile.mkdtemp(prefix='bindcheck-')
        try:
            with open(os.path.join(self._tmp, 'mpi.h'), 'w') as f:
                f.write(FAKE_MPI_H)
            args = ['-x', 'c', '-std=c11', '-I' + self._tmp]
            args += ['-I' + d for d in include_dirs]
            builtin = _builtin_include()
            if builtin:
                args += ['-isystem', builtin]
            self._args = args
            text = source_text if source_text is not None else ''.join(
                '#include "%s"\n' % os.path.abspath(f) for f in files)
            unit = os.path.join(self._tmp, 'unit.c')
            with open(unit, 'w') as f:
                f.write(text)
            tu = ci.Index.create().parse(unit, args=args,
                                         options=ci.TranslationUnit.PARSE_DETAILED_PROCESSING_RECORD)
            errors = [str(d) for d in tu.diagnostics if d.severity >= ci.Diagnostic.Error]
            if errors:
                raise CParseError('the header does not parse: ' + '; '.join(errors))
            self._read(tu.cursor, lambda path: True)
            self.shim_functions = {}
            for src in extra_sources:
                # Only the declarations of a shim are wanted; its bodies may use
                # MPI functions the stand-in lacks.
                stu = ci.Index.create().parse(src, args=args)
                for c in stu.cursor.get_children():
                    if (c.kind == ci.CursorKind.FUNCTION_DECL and c.location.file and
                            os.path.abspath(c.location.file.name) == os.path.abspath(src)):
                        self.shim_functions[c.spelling] = (
                            self.ctype(c.result_type), [self.ctype(a.type) for a in c.get_arguments()])
        finally:
            shutil.rmtree(self._tmp, ignore_errors=True)

    def _read(self, cursor, wanted):
        for c in cursor.get_children():
            if not c.location.file or os.path.basename(c.location.file.name) in ('mpi.h',):
                continue
            name = os.path.basename(c.location.file.name)
            if not name.startswith('pasha'):
                continue
            k = c.kind
            if k == ci.CursorKind.MACRO_DEFINITION and c.spelling.startswith('PSH_'):
                toks = [t.spelling for t in c.get_tokens()][1:]
                if len(toks) == 1 and re.fullmatch(r'\d+', toks[0]):
                    self.macros[c.spelling] = int(toks[0])
                elif len(toks) == 1 and toks[0].startswith('"'):
                    self.macros[c.spelling] = toks[0][1:-1]
                continue
            if k == ci.CursorKind.ENUM_DECL:
                for e in c.get_children():
                    self.constants[e.spelling] = e.enum_value
                    self.origin[e.spelling] = name
            elif k == ci.CursorKind.TYPEDEF_DECL:
                t = c.underlying_typedef_type
                can = t.get_canonical()
                if can.kind == ci.TypeKind.ENUM:
                    self.enums.add(c.spelling)
                elif can.kind == ci.TypeKind.POINTER and can.get_pointee().kind in (
                        ci.TypeKind.FUNCTIONPROTO, ci.TypeKind.FUNCTIONNOPROTO):
                    self.funcptrs.add(c.spelling)
                elif can.kind == ci.TypeKind.RECORD:
                    decl = can.get_declaration()
                    if decl.is_definition():
                        self._struct(c.spelling, can)
                    else:
                        self.opaque.add(c.spelling)
            elif k == ci.CursorKind.STRUCT_DECL and c.is_definition() and c.spelling:
                self._struct(c.spelling, c.type)
            elif k == ci.CursorKind.FUNCTION_DECL:
                self.functions[c.spelling] = (self.ctype(c.result_type),
                                              [self.ctype(a.type) for a in c.get_arguments()])
                self.origin[c.spelling] = name

    def _struct(self, name, t):
        fields = []
        for f in t.get_fields():
            fields.append((f.spelling, self.ctype(f.type), f.get_field_offsetof() // 8))
        self.structs[name] = fields
        self.struct_size[name] = t.get_size()

    def ctype(self, t):
        depth = 0
        while True:
            if t.kind == ci.TypeKind.TYPEDEF:
                name = t.get_declaration().spelling
                if name in ('size_t', 'ptrdiff_t', 'int64_t', 'uint64_t', 'int32_t', 'uint32_t', 'MPI_Comm',
                            'MPI_Fint'):
                    return (name, depth)
                if name in self.enums or name in self.funcptrs or name in self.opaque or name in self.structs:
                    return (name, depth)
                t = t.get_declaration().underlying_typedef_type
                continue
            if t.kind == ci.TypeKind.ELABORATED:
                t = t.get_named_type()
                continue
            if t.kind == ci.TypeKind.POINTER:
                p = t.get_pointee()
                if p.kind in (ci.TypeKind.FUNCTIONPROTO, ci.TypeKind.FUNCTIONNOPROTO):
                    return ('<funcptr>', depth)
                depth += 1
                t = p
                continue
            if t.kind == ci.TypeKind.RECORD:
                decl = t.get_declaration()
                n = decl.spelling
                return (n, depth)
            if t.kind == ci.TypeKind.ENUM:
                return (t.get_declaration().spelling or 'int', depth)
            spelling = t.spelling.replace('const', '').replace('volatile', '').strip()
            return ({'unsigned int': 'unsigned', 'long': 'long', 'unsigned long': 'unsigned long'}
                    .get(spelling, spelling), depth)


def pasha_headers(root):
    inc = os.path.join(root, 'include', 'pasha')
    return [os.path.join(inc, n) for n in ('pasha.h', 'pasha_mpi.h') if os.path.exists(os.path.join(inc, n))]


# ---------------------------------------------------------------------------
# Fortran
# ---------------------------------------------------------------------------

def fortran_expected(h, ctype, is_result):
    base, depth = ctype
    if depth == 0 and base == 'void':
        return {'subroutine'}
    if depth == 0 and (base in h.funcptrs or base == '<funcptr>'):
        return {'type(c_funptr),value'}
    if depth == 0 and (base in h.enums or base in ('int', 'unsigned', 'MPI_Fint')):
        return {'integer(c_int)' if is_result else 'integer(c_int),value'}
    if depth == 0 and base == 'long long':
        return {'integer(c_long_long)' if is_result else 'integer(c_long_long),value'}
    if depth == 0 and base == 'size_t':
        return {'integer(c_size_t)' if is_result else 'integer(c_size_t),value'}
    if depth == 0 and base == 'double':
        return {'real(c_double)' if is_result else 'real(c_double),value'}
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
    """name -> (result kind, [arg kinds], line) for every bind(C, name=...) interface.
    Fortran has no parser on PyPI that this check relies on; the statements
    of an interface block are regular enough to read line by line."""
    out = {}
    text = re.sub(r'&\s*\n\s*&?', ' ', text)
    lines = [re.sub(r'!.*', '', l) for l in text.splitlines()]
    i = 0
    while i < len(lines):
        m = re.match(r"\s*(?:((?:integer|real)\(\w+\)|type\(\w+\))\s+)?(function|subroutine)\s+(\w+)\s*\(([^)]*)\)"
                     r"\s*bind\(\s*C\s*,\s*name\s*=\s*'(\w+)'\s*\)", lines[i], re.I)
        if not m:
            i += 1
            continue
        start = i + 1
        result = m.group(1).lower().replace(' ', '') if m.group(1) else 'subroutine'
        args = [a.strip().lower() for a in m.group(4).split(',') if a.strip()]
        decls = {}
        i += 1
        while i < len(lines) and not re.match(r'\s*end\s+(function|subroutine)', lines[i], re.I):
            d = re.match(r'\s*([^:]+?)\s*::\s*(.+)$', lines[i])
            if d and not d.group(1).strip().lower().startswith('import'):
                attrs = [a.strip().lower().replace(' ', '') for a in split_commas(d.group(1))]
                for name in split_commas(d.group(2)):
                    nm = re.match(r'\s*(\w+)\s*(\(.*\))?', name)
                    kind = attrs[0]
                    if nm.group(2) or any(a.startswith('dimension') for a in attrs):
                        kind += '[]'
                    if 'value' in attrs:
                        kind += ',value'
                    decls[nm.group(1).lower()] = kind
            i += 1
        out[m.group(5)] = (result, [decls.get(a, '?') for a in args], start)
    return out


def split_commas(s):
    parts, depth, cur = [], 0, ''
    for ch in s:
        depth += {'(': 1, ')': -1}.get(ch, 0)
        if ch == ',' and depth == 0:
            parts.append(cur)
            cur = ''
        else:
            cur += ch
    parts.append(cur)
    return [p for p in parts if p.strip()]


FORTRAN_SIZE = {'integer(c_int)': 4, 'integer(c_size_t)': 8, 'integer(c_long_long)': 8, 'integer(c_int64_t)': 8,
                'type(c_ptr)': 8, 'type(c_funptr)': 8, 'real(c_double)': 8, 'real(c_float)': 4}


def parse_fortran_types(text):
    """name -> ([(field, kind)], line) for every `type, bind(C) :: name` block."""
    out = {}
    lines = [re.sub(r'!.*', '', l) for l in text.splitlines()]
    i = 0
    while i < len(lines):
        m = re.match(r'\s*type\s*,\s*bind\(\s*C\s*\)\s*::\s*(\w+)', lines[i], re.I)
        if not m:
            i += 1
            continue
        start, fields = i + 1, []
        i += 1
        while i < len(lines) and not re.match(r'\s*end\s+type', lines[i], re.I):
            d = re.match(r'\s*([^:]+?)\s*::\s*(.+)$', lines[i])
            if d:
                kind = d.group(1).strip().lower().replace(' ', '')
                for fname in split_commas(d.group(2)):
                    fields.append((re.match(r'\s*(\w+)', fname).group(1), kind))
            i += 1
        out[m.group(1)] = (fields, start)
    return out


def check_fortran_types(h, fortran_text, name):
    """Each bind(C) type named after a C struct: field names, kinds, offsets, size."""
    problems = []
    types = parse_fortran_types(fortran_text)
    for tname, (fields, line) in sorted(types.items()):
        where = '%s:%d' % (name, line)
        if tname not in h.structs:
            problems.append('%s: type %s is not a struct of the header' % (where, tname))
            continue
        cfields = h.structs[tname]
        if [f.lower() for f, _ in fields] != [f.lower() for f, _, _ in cfields]:
            problems.append('%s: type %s has fields %s, the header %s'
                            % (where, tname, [f for f, _ in fields], [f for f, _, _ in cfields]))
            continue
        off = align = 0
        bad = False
        for (f, kind), (_, ct, coff) in zip(fields, cfields):
            ok = {k.replace(',value', '') for k in fortran_expected(h, ct, False)} if ct[1] == 0 else {'type(c_ptr)'}
            if ct[0] in h.funcptrs or ct[0] == '<funcptr>':
                ok = {'type(c_funptr)'}
            if kind not in ok:
                problems.append('%s: %s%%%s is %s in C, %s in Fortran (expected one of %s)'
                                % (where, tname, f, ct, kind, sorted(ok)))
                bad = True
            size = FORTRAN_SIZE.get(kind)
            if size is None:
                problems.append('%s: %s%%%s: no known layout for %s' % (where, tname, f, kind))
                bad = True
                break
            off = (off + size - 1) // size * size
            if off != coff:
                problems.append('%s: %s%%%s is at offset %d in Fortran, %d in C' % (where, tname, f, off, coff))
                bad = True
            off += size
            align = max(align, size)
        total = (off + align - 1) // align * align if align else 0
        if not bad and total != h.struct_size[tname]:
            problems.append('%s: type %s is %d bytes in Fortran, %d in C' % (where, tname, total, h.struct_size[tname]))
    return problems, len(types)


def check_fortran(h, fortran_text, origin='pasha.h', name='pasha.f90', shim=None):
    """Problems between the Fortran interfaces and the functions and
    constants of one header (origin); shim: functions of a C shim that the
    module may bind instead (psh_fortran_X for psh_X)."""
    f = parse_fortran(fortran_text)
    problems = []
    shim = shim or {}
    functions = {n: v for n, v in h.functions.items() if h.origin.get(n) == origin}
    targets = dict(functions)
    for n, v in shim.items():
        targets[n] = v
    for fname, (cret, cargs) in sorted(functions.items()):
        alias = 'psh_fortran_' + fname[len('psh_'):]
        if fname not in f and alias not in f:
            problems.append('%s: no interface for %s' % (name, fname))
    for fname, (fret, fargs, line) in sorted(f.items()):
        where = '%s:%d' % (name, line)
        if fname not in targets:
            problems.append('%s: %s is not declared in the header' % (where, fname))
            continue
        cret, cargs = targets[fname]
        if fret not in fortran_expected(h, cret, True):
            problems.append('%s: %s returns %s in C, %s in Fortran' % (where, fname, cret, fret))
        if len(fargs) != len(cargs):
            problems.append('%s: %s takes %d arguments in C, %d in Fortran' % (where, fname, len(cargs), len(fargs)))
            continue
        for k, (fa, ca) in enumerate(zip(fargs, cargs)):
            ok = fortran_expected(h, ca, False)
            if fa not in ok:
                problems.append('%s: %s argument %d is %s in C, %s in Fortran (expected one of %s)'
                                % (where, fname, k + 1, ca, fa, sorted(ok)))
    consts = {}
    for m in re.finditer(r'\b(PSH_\w+)\s*=\s*(-?\d+)', fortran_text):
        consts[m.group(1)] = int(m.group(2))
    for cname, value in sorted(h.constants.items()):
        if h.origin.get(cname) != origin:
            continue
        if cname not in consts:
            problems.append('%s: no constant %s (= %d)' % (name, cname, value))
        elif consts[cname] != value:
            problems.append('%s: %s is %d in the header, %d in Fortran' % (name, cname, value, consts[cname]))
    tp, _ = check_fortran_types(h, fortran_text, name)
    problems += tp
    for m in re.finditer(r"\b(PSH_\w+)\s*=\s*'([^']*)'", fortran_text):
        consts[m.group(1)] = m.group(2)
    for cname in sorted(set(consts) - set(h.constants)):
        if cname in h.macros:
            if h.macros[cname] != consts[cname]:
                problems.append('%s: %s is %r in the header, %r in Fortran' % (name, cname, h.macros[cname],
                                                                               consts[cname]))
        else:
            problems.append('%s: constant %s is not in the header' % (name, cname))
    return problems, len(functions)


# ---------------------------------------------------------------------------
# Julia, through tree-sitter-julia
# ---------------------------------------------------------------------------

JULIA_BASE = {
    'int': 'Cint', 'unsigned': 'Cuint', 'long': 'Clong', 'unsigned long': 'Culong', 'long long': 'Clonglong',
    'unsigned long long': 'Culonglong', 'char': 'Cchar', 'void': 'Cvoid', 'size_t': 'Csize_t',
    'ptrdiff_t': 'Cptrdiff_t', 'double': 'Cdouble', 'float': 'Cfloat', 'int64_t': 'Int64', 'uint64_t': 'UInt64',
    'int32_t': 'Int32', 'uint32_t': 'UInt32',
}
# Size and alignment of the Julia types a struct field may have (x86-64 and
# aarch64 Linux: LP64).
JULIA_LAYOUT = {
    'Cint': 4, 'Cuint': 4, 'Clong': 8, 'Culong': 8, 'Clonglong': 8, 'Culonglong': 8, 'Cchar': 1, 'UInt8': 1,
    'Csize_t': 8, 'Cptrdiff_t': 8, 'Cdouble': 8, 'Cfloat': 4, 'Int64': 8, 'UInt64': 8, 'Int32': 4,
    'UInt32': 4, 'Cstring': 8,
}


def julia_types(h, ctype, arg):
    """The set of Julia spellings that match a C type."""
    base, depth = ctype
    if base == '<funcptr>' or base in h.funcptrs:
        inner = {'Ptr{Cvoid}'}
        for _ in range(depth):
            inner = _wrap(inner, arg)
        return inner
    if depth == 0:
        if base in h.enums:
            return {'Cint'}
        if base in JULIA_BASE:
            return {JULIA_BASE[base]}
        if base in h.opaque:
            return {'Cvoid'}
        if base in h.structs:
            return {base}
        raise ValueError('no Julia mapping for C type %r' % (base,))
    out = _wrap(julia_types(h, (base, depth - 1), arg), arg)
    if base == 'char' and depth == 1:
        out |= {'Cstring', 'Ptr{UInt8}'}
    return out


def _wrap(inner, arg):
    out = {'Ptr{Cvoid}'}
    for t in inner:
        out.add('Ptr{%s}' % t)
        if arg:
            out.add('Ref{%s}' % t)
    return out


def julia_size(t, jstructs):
    if t.startswith('Ptr{') or t.startswith('Ref{'):
        return 8, 8
    if t in JULIA_LAYOUT:
        return JULIA_LAYOUT[t], JULIA_LAYOUT[t]
    if t in jstructs:
        return jstructs[t]['size'], jstructs[t]['align']
    return None, None


class JuliaSource:
    """The ccalls, constants and structs of a Julia file, from its syntax tree."""

    def __init__(self, text):
        try:
            import tree_sitter
            import tree_sitter_julia
        except ImportError as e:
            raise CParseError('tree-sitter or tree-sitter-julia is not installed (%s; pip install -r '
                              'tools/deps/bindcheck.pip)' % e)
        self.src = text.encode()
        parser = tree_sitter.Parser(tree_sitter.Language(tree_sitter_julia.language()))
        self.tree = parser.parse(self.src)
        self.ccalls = []     # (line, name or None, ret, [arg types] or None, n args passed, raw)
        self.constants = {}  # name -> (value, line)
        self.structs = {}    # name -> {'fields': [(name, type)], 'line': n}
        self.errors = []
        if self.tree.root_node.has_error:
            bad = self._first_error(self.tree.root_node)
            self.errors.append('Pasha.jl:%d: syntax error' % (bad.start_point[0] + 1 if bad else 0))
        self._walk(self.tree.root_node)

    def _first_error(self, n):
        if n.type == 'ERROR' or n.is_missing:
            return n
        for c in n.children:
            e = self._first_error(c)
            if e:
                return e
        return None

    def text(self, n):
        return self.src[n.start_byte:n.end_byte].decode()

    def _walk(self, n):
        stack = [n]
        while stack:
            n = stack.pop()
            if n.type == 'call_expression' and n.named_children and self.text(n.named_children[0]) == 'ccall':
                self._ccall(n)
            elif n.type == 'const_statement':
                self._const(n)
            elif n.type == 'struct_definition':
                self._struct(n)
            stack.extend(reversed(n.named_children))

    def _ccall(self, n):
        line = n.start_point[0] + 1
        args = [c for c in n.named_children[1].named_children if c.type != 'comment'] \
            if len(n.named_children) > 1 else []
        raw = self.text(n)
        name = ret = types = None
        if args and args[0].type in ('tuple_expression', 'parenthesized_expression'):
            parts = [c for c in args[0].named_children if c.type != 'comment']
            if parts and parts[0].type == 'quote_expression':
                name = self.text(parts[0]).lstrip(':')
        if len(args) > 1:
            ret = norm(self.text(args[1]))
        if len(args) > 2:
            t = args[2]
            if t.type == 'tuple_expression':
                types = [norm(self.text(c)) for c in t.named_children if c.type != 'comment']
            elif t.type == 'parenthesized_expression' and self.text(t).replace(' ', '') == '()':
                types = []
            elif self.text(t).replace(' ', '') == '()':
                types = []
        self.ccalls.append((line, name, ret, types, max(0, len(args) - 3), raw))

    def _const(self, n):
        a = n.named_children[0] if n.named_children else None
        if a is None or a.type != 'assignment':
            return
        lhs, rhs = a.named_children[0], a.named_children[-1]
        name = self.text(lhs)
        if not name.startswith('PSH_'):
            return
        m = re.fullmatch(r'Cint\(\s*(-?\s*\d+)\s*\)', self.text(rhs).strip())
        self.constants[name] = (int(m.group(1).replace(' ', '')) if m else None, n.start_point[0] + 1)

    def _struct(self, n):
        head = [c for c in n.named_children if c.type == 'type_head']
        if not head:
            return
        name = self.text(head[0]).split('<:')[0].strip()
        fields = []
        for c in n.named_children:
            if c.type == 'typed_expression' and len(c.named_children) == 2:
                fields.append((self.text(c.named_children[0]), norm(self.text(c.named_children[1]))))
        self.structs[name] = {'fields': fields, 'line': n.start_point[0] + 1}


def norm(t):
    return re.sub(r'\s+', '', t)


def check_julia(h, julia_text, name='Pasha.jl', origin='pasha.h'):
    j = JuliaSource(julia_text)
    problems = list(j.errors)
    seen = set()
    functions = {n: v for n, v in h.functions.items() if h.origin.get(n) == origin}
    for line, fname, ret, types, passed, raw in j.ccalls:
        where = '%s:%d' % (name, line)
        if fname is None or ret is None or types is None:
            problems.append('%s: cannot read the ccall %s' % (where, ' '.join(raw.split())[:80]))
            continue
        seen.add(fname)
        if fname not in h.functions:
            problems.append('%s: %s is not declared in the header' % (where, fname))
            continue
        cret, cargs = h.functions[fname]
        ok = julia_types(h, cret, arg=False)
        if ret not in ok:
            problems.append('%s: %s returns %s in C, the ccall says %s (expected one of %s)'
                            % (where, fname, cret, ret, sorted(ok)))
        if len(types) != len(cargs):
            problems.append('%s: %s takes %d arguments in C, the ccall lists %d types'
                            % (where, fname, len(cargs), len(types)))
            continue
        if passed != len(cargs):
            problems.append('%s: %s takes %d arguments, the ccall passes %d' % (where, fname, len(cargs), passed))
        for k, (jt, c) in enumerate(zip(types, cargs)):
            ok = julia_types(h, c, arg=True)
            if jt not in ok:
                problems.append('%s: %s argument %d is %s in C, the ccall says %s (expected one of %s)'
                                % (where, fname, k + 1, c, jt, sorted(ok)))
    for fname in sorted(set(functions) - seen):
        problems.append('%s: no ccall wraps %s' % (name, fname))

    for cname, value in sorted(h.constants.items()):
        if h.origin.get(cname) != origin:
            continue
        if cname not in j.constants:
            problems.append('%s: no constant %s (= %d)' % (name, cname, value))
        elif j.constants[cname][0] != value:
            problems.append('%s:%d: %s is %d in the header, %s in Julia'
                            % (name, j.constants[cname][1], cname, value, j.constants[cname][0]))
    for cname in sorted(set(j.constants) - set(h.constants)):
        problems.append('%s:%d: constant %s is not in the header' % (name, j.constants[cname][1], cname))

    layouts = {}
    for sname, s in j.structs.items():
        if not sname.startswith('psh_'):
            continue
        where = '%s:%d' % (name, s['line'])
        if sname not in h.structs:
            problems.append('%s: struct %s is not in the header' % (where, sname))
            continue
        cfields = h.structs[sname]
        if [f for f, _ in s['fields']] != [f for f, _, _ in cfields]:
            problems.append('%s: struct %s has fields %s, the header %s'
                            % (where, sname, [f for f, _ in s['fields']], [f for f, _, _ in cfields]))
            continue
        off, align, bad = 0, 1, False
        for (f, jt), (_, ct, coff) in zip(s['fields'], cfields):
            ok = {t for t in julia_types(h, ct, arg=False) if not t.startswith('Ref')}
            if jt not in ok:
                problems.append('%s: %s.%s is %s in C, %s in Julia (expected one of %s)'
                                % (where, sname, f, ct, jt, sorted(ok)))
                bad = True
            size, a = julia_size(jt, layouts)
            if size is None:
                problems.append('%s: %s.%s: no known layout for the Julia type %s' % (where, sname, f, jt))
                bad = True
                break
            off = (off + a - 1) // a * a
            if off != coff:
                problems.append('%s: %s.%s is at offset %d in Julia, %d in C' % (where, sname, f, off, coff))
                bad = True
            off += size
            align = max(align, a)
        size = (off + align - 1) // align * align
        if not bad and size != h.struct_size[sname]:
            problems.append('%s: struct %s is %d bytes in Julia, %d in C' % (where, sname, size, h.struct_size[sname]))
        layouts[sname] = {'size': size, 'align': align}
    for sname in sorted(set(h.structs) - set(j.structs)):
        if all(h.origin.get(fn) != origin for fn in h.functions) or sname.startswith('psh_'):
            problems.append('%s: no Julia struct mirrors %s' % (name, sname))
    return problems, (len(functions), len([c for c in h.constants if h.origin.get(c) == origin]),
                      len(h.structs))


# ---------------------------------------------------------------------------
# Python
# ---------------------------------------------------------------------------

def python_ext_constants(h, sources, include_dirs):
    """[(file, line, python name, header constant or None)] of every
    PyModule_AddIntConstant in the extension's C sources."""
    import sysconfig
    out = []
    args = ['-x', 'c', '-std=c11'] + ['-I' + d for d in include_dirs]
    args += ['-I' + sysconfig.get_paths()['include']]
    builtin = _builtin_include()
    if builtin:
        args += ['-isystem', builtin]
    for src in sources:
        tu = ci.Index.create().parse(src, args=args)
        stack = [tu.cursor]
        while stack:
            c = stack.pop()
            if c.kind == ci.CursorKind.CALL_EXPR and c.spelling == 'PyModule_AddIntConstant' and \
                    c.location.file and os.path.abspath(c.location.file.name) == os.path.abspath(src):
                a = list(c.get_arguments())
                if len(a) == 3:
                    lit = [t.spelling for t in a[1].get_tokens() if t.kind == ci.TokenKind.LITERAL]
                    refs = [t.spelling for t in a[2].get_tokens() if t.kind == ci.TokenKind.IDENTIFIER]
                    pyname = lit[0].strip('"') if lit else None
                    const = refs[0] if len(refs) == 1 else None
                    out.append((os.path.basename(src), c.location.line, pyname, const))
            stack.extend(c.get_children())
    return out


def python_mirrors(text):
    """[(line, name, value)] of module-level integers of a .py file, and of
    the entries of module-level dicts of str -> int (name_KEY)."""
    out = []
    tree = ast.parse(text)
    for node in tree.body:
        if not isinstance(node, ast.Assign) or len(node.targets) != 1:
            continue
        t, v = node.targets[0], node.value
        pairs = []
        if isinstance(t, ast.Name):
            pairs = [(t.id, v)]
        elif isinstance(t, ast.Tuple) and isinstance(v, ast.Tuple) and len(t.elts) == len(v.elts):
            pairs = [(e.id, x) for e, x in zip(t.elts, v.elts) if isinstance(e, ast.Name)]
        for name, val in pairs:
            iv = _int_literal(val)
            if iv is not None:
                out.append((node.lineno, name, iv))
            elif isinstance(val, ast.Dict):
                base = name.rstrip('S') if name.endswith('S') else name
                for k, x in zip(val.keys, val.values):
                    iv = _int_literal(x)
                    if isinstance(k, ast.Constant) and isinstance(k.value, str) and iv is not None:
                        out.append((node.lineno, '%s_%s' % (base, k.value.upper()), iv))
    return out


def _int_literal(v):
    if isinstance(v, ast.Constant) and type(v.value) is int:
        return v.value
    if isinstance(v, ast.UnaryOp) and isinstance(v.op, ast.USub) and isinstance(v.operand, ast.Constant) \
            and type(v.operand.value) is int:
        return -v.operand.value
    return None


def check_python(h, pkg_dir, include_dirs):
    problems = []
    n = 0
    csrc = sorted(glob.glob(os.path.join(pkg_dir, '**', '*.c'), recursive=True))
    for f, line, pyname, const in python_ext_constants(h, csrc, include_dirs):
        if const is None or not const.startswith('PSH_'):
            continue  # a constant of the extension's own (ERR_HEADER)
        n += 1
        if const not in h.constants:
            problems.append('%s:%d: PyModule_AddIntConstant(%s): %s is not in the header' % (f, line, pyname, const))
        elif pyname != const[len('PSH_'):]:
            problems.append('%s:%d: the extension exports %s as %s (expected %s)'
                            % (f, line, const, pyname, const[len('PSH_'):]))
    for py in sorted(glob.glob(os.path.join(pkg_dir, '*.py'))):
        with open(py) as fh:
            mirrors = python_mirrors(fh.read())
        for line, name, value in mirrors:
            cname = 'PSH_' + name.lstrip('_')
            if cname not in h.constants:
                continue
            n += 1
            if h.constants[cname] != value:
                problems.append('%s:%d: %s = %d mirrors %s, which is %d in the header'
                                % (os.path.basename(py), line, name, value, cname, h.constants[cname]))
    return problems, n


# ---------------------------------------------------------------------------

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--root', default=ROOT)
    ap.add_argument('what', nargs='*', default='all', choices=['all', 'fortran', 'julia', 'python'])
    ap.add_argument('--julia', help='the Julia file (default: bindings/julia/src/Pasha.jl)')
    ap.add_argument('--fortran', help='the Fortran module (default: bindings/fortran/pasha.f90)')
    ap.add_argument('--fortran-mpi', help='the Fortran MPI module (default: bindings/fortran/mpi/pasha_mpi.f90)')
    ap.add_argument('--python', help='the Python package (default: bindings/python/src/pasha)')
    ap.add_argument('--header-dir', help='the directory of pasha.h (default: include/pasha)')
    a = ap.parse_args(argv)
    what = {a.what} if isinstance(a.what, str) else set(a.what)
    if 'all' in what:
        what = {'fortran', 'julia', 'python'}
    root = a.root
    hdir = a.header_dir or os.path.join(root, 'include', 'pasha')
    inc = os.path.dirname(hdir)
    fortran = a.fortran or os.path.join(root, 'bindings', 'fortran', 'pasha.f90')
    fortran_mpi = a.fortran_mpi or os.path.join(root, 'bindings', 'fortran', 'mpi', 'pasha_mpi.f90')
    shim = os.path.join(os.path.dirname(fortran_mpi), 'pasha_mpi_shim.c')
    julia = a.julia or os.path.join(root, 'bindings', 'julia', 'src', 'Pasha.jl')
    python = a.python or os.path.join(root, 'bindings', 'python', 'src', 'pasha')
    try:
        headers = [os.path.join(hdir, n) for n in ('pasha.h', 'pasha_mpi.h') if os.path.exists(os.path.join(hdir, n))]
        h = Header(headers, include_dirs=[inc], extra_sources=[shim] if 'fortran' in what and
                   os.path.exists(shim) else [])
        problems, report = [], []
        if 'fortran' in what:
            with open(fortran) as f:
                p, n = check_fortran(h, f.read(), 'pasha.h', os.path.basename(fortran))
            problems += p
            report.append('%d Fortran interfaces (pasha.h)' % n)
            if os.path.exists(fortran_mpi):
                with open(fortran_mpi) as f:
                    p, n = check_fortran(h, f.read(), 'pasha_mpi.h', os.path.basename(fortran_mpi),
                                         shim=h.shim_functions)
                problems += p
                report.append('%d Fortran MPI interfaces (pasha_mpi.h)' % n)
        if 'julia' in what:
            with open(julia) as f:
                p, (nf, nc, ns) = check_julia(h, f.read(), os.path.basename(julia))
            problems += p
            report.append('%d Julia ccalls, %d constants, %d structs' % (nf, nc, ns))
        if 'python' in what:
            p, n = check_python(h, python, [inc])
            problems += p
            report.append('%d Python constants' % n)
    except CParseError as e:
        print('bindcheck: %s' % e, file=sys.stderr)
        return 2
    for p in problems:
        print(p)
    if problems:
        print('FAIL: %d difference(s) from %s' % (len(problems), hdir))
        return 1
    print('OK: %s match %s' % (', '.join(report), hdir))
    return 0


if __name__ == '__main__':
    sys.exit(main())
