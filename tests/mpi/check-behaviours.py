#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-3-Clause
"""The three drivers of the MPI behaviour suite implement exactly the cases
of the spec (tests/mpi/behaviours.txt), so that they cannot drift apart.

Usage: check-behaviours.py SPEC C_DRIVER FORTRAN_DRIVER PYTHON_DRIVER

Each driver names its cases in one way the checker reads:
  C        a table line   {"case-name", function},
  Fortran  a select case  case ('case-name')
  Python   a decorator    @case('case-name')
A case of the spec that a driver lacks, or a case a driver has that the
spec lacks, is an error naming both; so is a driver that implements a case
the spec marks "na" for its language, and an na/gap line naming an unknown
case or language. Exit status 1 on any error, with every error listed.
"""

import re
import sys

LANGS = ('c', 'fortran', 'python')
PATTERNS = {
    'c': re.compile(r'^\s*\{\s*"([a-z0-9-]+)"\s*,\s*case_\w+\s*\}\s*,?\s*$', re.M),
    'fortran': re.compile(r"^\s*case\s*\(\s*'([a-z0-9-]+)'\s*\)", re.M | re.I),
    'python': re.compile(r"^\s*@case\(\s*'([a-z0-9-]+)'\s*\)", re.M),
}
OUTCOMES = {'ok', 'EINVAL', 'EKERNEL', 'EWORKER', 'ECANCELED'}


def read_spec(path):
    """([case names in order], {(lang, case): reason} of na, same of gap, [errors])."""
    names, na, gap, errors = [], {}, {}, []
    with open(path) as f:
        for no, line in enumerate(f, 1):
            words = line.split()
            if not words or words[0].startswith('#'):
                continue
            if words[0] in ('na', 'gap'):
                if len(words) < 4:
                    errors.append(f'{path}:{no}: "{words[0]} LANG CASE REASON" needs a reason')
                    continue
                (na if words[0] == 'na' else gap)[(words[1], words[2])] = ' '.join(words[3:])
                continue
            if len(words) < 6:
                errors.append(f'{path}:{no}: a case line needs NAME FAIL-ON FAILING OTHERS MIN-RANKS '
                              f'DESCRIPTION: {line.strip()}')
                continue
            name, fail_on, failing, others, min_ranks = words[:5]
            if name in names:
                errors.append(f'{path}:{no}: case {name} twice')
            if fail_on not in ('none', 'last', 'all'):
                errors.append(f'{path}:{no}: {name}: FAIL-ON {fail_on!r} is not none, last or all')
            for o in (failing, others):
                base = o[len('remote-'):] if o.startswith('remote-') else o
                if base not in OUTCOMES:
                    errors.append(f'{path}:{no}: {name}: outcome {o!r} is not one of '
                                  f'{sorted(OUTCOMES)} (or remote-X)')
            if not min_ranks.isdigit() or int(min_ranks) < 1:
                errors.append(f'{path}:{no}: {name}: MIN-RANKS {min_ranks!r} is not a positive integer')
            names.append(name)
    for kind, table in (('na', na), ('gap', gap)):
        for lang, name in table:
            if lang not in LANGS:
                errors.append(f'{path}: {kind} line for an unknown language {lang!r} '
                              f'(one of {", ".join(LANGS)})')
            if name not in names:
                errors.append(f'{path}: {kind} line for {lang} names {name!r}, which is not a case')
    return names, na, gap, errors


def main(argv):
    if len(argv) != 5:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    spec, drivers = argv[1], dict(zip(LANGS, argv[2:]))
    names, na, gap, errors = read_spec(spec)
    for lang, path in drivers.items():
        with open(path) as f:
            found = PATTERNS[lang].findall(f.read())
        if not found:
            errors.append(f'{lang} driver {path}: no cases found (is it the driver?)')
            continue
        seen = set()
        for name in found:
            if name in seen:
                errors.append(f'{lang} driver {path}: case {name} twice')
            seen.add(name)
        for name in names:
            if name not in seen and (lang, name) not in na:
                errors.append(f'{lang} driver {path} lacks case {name} of {spec}')
            if name in seen and (lang, name) in na:
                errors.append(f'{lang} driver {path} implements case {name}, which {spec} marks '
                              f'not applicable to {lang} ({na[(lang, name)]})')
        for name in found:
            if name not in names:
                errors.append(f'{lang} driver {path} has case {name}, which {spec} lacks')
    for e in errors:
        print('check-behaviours: ' + e, file=sys.stderr)
    if not errors:
        cells = len(names) * len(LANGS) - len(na)
        print(f'check-behaviours: {len(names)} cases, {len(drivers)} drivers, {cells} implemented, '
              f'{len(na)} not applicable, {len(gap)} known gaps')
    return 1 if errors else 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
