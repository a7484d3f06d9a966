"""Offline checks of an SROS2 access-control policy (config/security/policy.xml).

The DDS security plugins enforce a policy only at run time, on a robot whose middleware has
them. This module checks a policy without them: its structure against the format (the same
content model as config/security/policy.xsd, with xml.etree only; ``xsd_errors`` runs the
XSD itself where lxml is installed), and what it grants, resolved the way sros2 resolves
names (relative against the profile's ``ns``, ``~/x`` as ``/<ns>/<node>/x``), per enclave:
DDS grants permissions per enclave (one certificate per process), so every profile of an
enclave adds to the same grant, DENY before ALLOW, default deny.

    python -m wam_runtime.tools.sros2_policy [policy.xml]
"""

import argparse
import fnmatch
import os
import re
import sys
from typing import Dict, List, Optional, Sequence, Set
from xml.etree import ElementTree

from wam_runtime.processes import share_dir

XML_NS = '{http://www.w3.org/XML/1998/namespace}'
VERSION = '0.2.0'
PERMISSIONS = ('ALLOW', 'DENY')
# list element -> (item element, its permission attributes)
LISTS = {'topics': ('topic', ('publish', 'subscribe')),
         'services': ('service', ('request', 'reply')),
         'actions': ('action', ('call', 'execute'))}
ABSOLUTE_PATH = re.compile(r'/|(/[A-Za-z_][A-Za-z0-9_]*)+/?')
NODE_NAME = re.compile(r'[A-Za-z_][A-Za-z0-9_]*')
ROS_NAME = re.compile(r'(~/|/)?[A-Za-z0-9_*?]+(/[A-Za-z0-9_*?]+)*')

Grants = Dict[str, Dict[str, Dict[str, Set[str]]]]   # enclave -> ALLOW|DENY -> perm -> names


class PolicyError(ValueError):
    """A policy that does not follow the format; the message lists every problem."""


def default_policy() -> str:
    """Return the path of the shipped policy."""
    return os.path.join(share_dir(), 'config', 'security', 'policy.xml')


def default_schema() -> str:
    """Return the path of the shipped schema of the policy format."""
    return os.path.join(share_dir(), 'config', 'security', 'policy.xsd')


def _attrs(elem: ElementTree.Element, allowed: Sequence[str], required: Sequence[str],
           where: str, errors: List[str]) -> None:
    for name in elem.attrib:
        if name not in allowed and not name.startswith(XML_NS):
            errors.append(f'{where}: unknown attribute {name!r}')
    for name in required:
        if name not in elem.attrib:
            errors.append(f'{where}: missing attribute {name!r}')


def _children(elem: ElementTree.Element, allowed: Sequence[str], where: str,
              errors: List[str]) -> List[ElementTree.Element]:
    if (elem.text or '').strip():
        errors.append(f'{where}: unexpected text {elem.text.strip()!r}')
    kids = list(elem)
    for kid in kids:
        if kid.tag not in allowed:
            errors.append(f'{where}: unknown element <{kid.tag}>')
        if (kid.tail or '').strip():
            errors.append(f'{where}: unexpected text {kid.tail.strip()!r}')
    return [k for k in kids if k.tag in allowed]


def _pattern(value: Optional[str], pattern, what: str, where: str, errors: List[str]) -> None:
    if value is not None and not pattern.fullmatch(value):
        errors.append(f'{where}: {what} {value!r} is not valid')


def structure_errors(root: ElementTree.Element) -> List[str]:
    """Return every way ``root`` departs from the policy format (empty: well-formed)."""
    errors: List[str] = []
    if root.tag != 'policy':
        return [f'root element is <{root.tag}>, not <policy>']
    _attrs(root, ('version',), ('version',), '<policy>', errors)
    if root.get('version') not in (None, VERSION):
        errors.append(f'<policy>: version {root.get("version")!r} is not {VERSION!r}')
    kids = _children(root, ('enclaves',), '<policy>', errors)
    if len(kids) != 1:
        errors.append(f'<policy>: needs exactly one <enclaves>, has {len(kids)}')
    paths: Set[str] = set()
    for enclaves in kids:
        _attrs(enclaves, (), (), '<enclaves>', errors)
        enclave_list = _children(enclaves, ('enclave',), '<enclaves>', errors)
        if not enclave_list:
            errors.append('<enclaves>: needs at least one <enclave>')
        for enclave in enclave_list:
            path = enclave.get('path')
            where = f'<enclave path={path!r}>'
            _attrs(enclave, ('path',), ('path',), where, errors)
            _pattern(path, ABSOLUTE_PATH, 'path', where, errors)
            if path in paths:
                errors.append(f'{where}: path defined twice')
            paths.add(path)
            profiles_list = _children(enclave, ('profiles',), where, errors)
            if not profiles_list:
                errors.append(f'{where}: needs at least one <profiles>')
            for profiles in profiles_list:
                _profiles_errors(profiles, where, errors)
    return errors


def _profiles_errors(profiles: ElementTree.Element, where: str, errors: List[str]) -> None:
    _attrs(profiles, ('type',), (), f'{where} <profiles>', errors)
    kids = _children(profiles, ('profile', 'metadata'), f'{where} <profiles>', errors)
    tags = [k.tag for k in kids]
    if 'profile' not in tags:
        errors.append(f'{where} <profiles>: needs at least one <profile>')
    if tags.count('metadata') > 1 or ('metadata' in tags and tags[-1] != 'metadata'):
        errors.append(f'{where} <profiles>: at most one <metadata>, after the profiles')
    for profile in kids:
        if profile.tag != 'profile':
            continue
        pwhere = f'{where} <profile ns={profile.get("ns")!r} node={profile.get("node")!r}>'
        _attrs(profile, ('ns', 'node'), ('ns', 'node'), pwhere, errors)
        _pattern(profile.get('ns'), ABSOLUTE_PATH, 'ns', pwhere, errors)
        _pattern(profile.get('node'), NODE_NAME, 'node', pwhere, errors)
        for lst in _children(profile, tuple(LISTS), pwhere, errors):
            item, perms = LISTS[lst.tag]
            lwhere = f'{pwhere} <{lst.tag}>'
            _attrs(lst, perms, (), lwhere, errors)
            given = [p for p in perms if p in lst.attrib]
            if not given:
                errors.append(f'{lwhere}: grants nothing (no {" or ".join(perms)} '
                              'attribute)')
            for perm in given:
                if lst.get(perm) not in PERMISSIONS:
                    errors.append(f'{lwhere}: {perm}={lst.get(perm)!r} is not ALLOW or DENY')
            items = _children(lst, (item,), lwhere, errors)
            if not items:
                errors.append(f'{lwhere}: needs at least one <{item}>')
            for name in items:
                _attrs(name, (), (), f'{lwhere} <{item}>', errors)
                if list(name):
                    errors.append(f'{lwhere} <{item}>: unknown element <{name[0].tag}>')
                _pattern((name.text or '').strip(), ROS_NAME, f'<{item}> name', lwhere,
                         errors)


def load(path: str) -> ElementTree.Element:
    """Parse and check a policy file; raise PolicyError listing every problem."""
    try:
        root = ElementTree.parse(path).getroot()
    except ElementTree.ParseError as exc:
        raise PolicyError(f'{path}: not well-formed XML: {exc}') from None
    errors = structure_errors(root)
    if errors:
        raise PolicyError(f'{path}:\n  ' + '\n  '.join(errors))
    return root


def xsd_errors(path: str, schema: Optional[str] = None) -> List[str]:
    """Validate ``path`` against the XSD with lxml; return the errors (ImportError without)."""
    from lxml import etree
    xsd = etree.XMLSchema(etree.parse(schema or default_schema()))
    try:
        doc = etree.parse(path)
    except etree.XMLSyntaxError as exc:
        return [f'not well-formed XML: {exc}']
    if xsd.validate(doc):
        return []
    return [f'line {e.line}: {e.message}' for e in xsd.error_log]


def resolve(name: str, ns: str, node: str) -> str:
    """Return the absolute ROS name of a policy name in the profile ``ns``/``node``."""
    base = ns if ns.endswith('/') else ns + '/'
    if name.startswith('/'):
        return name
    if name.startswith('~/'):
        return base + node + name[1:]
    return base + name


def grants(root: ElementTree.Element) -> Grants:
    """Return what each enclave is granted: enclave -> ALLOW|DENY -> permission -> names."""
    out: Grants = {}
    for enclave in root.iter('enclave'):
        rules = out.setdefault(enclave.get('path'), {q: {} for q in PERMISSIONS})
        for profile in enclave.iter('profile'):
            ns, node = profile.get('ns'), profile.get('node')
            for lst in profile:
                item, perms = LISTS[lst.tag]
                names = {resolve(e.text.strip(), ns, node) for e in lst.iter(item)}
                for perm in perms:
                    if perm in lst.attrib:
                        rules[lst.get(perm)].setdefault(perm, set()).update(names)
    return out


def allowed(rules: Dict[str, Dict[str, Set[str]]], permission: str, name: str) -> bool:
    """Return True when an enclave's rules allow ``permission`` on the absolute ``name``."""
    def matches(qualifier: str) -> bool:
        return any(fnmatch.fnmatchcase(name, pattern)
                   for pattern in rules[qualifier].get(permission, ()))
    return not matches('DENY') and matches('ALLOW')


def holders(g: Grants, permission: str, name: str) -> Set[str]:
    """Return the enclaves allowed ``permission`` on ``name``."""
    return {enclave for enclave, rules in g.items() if allowed(rules, permission, name)}


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Command line: check a policy and print what each enclave may do."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('policy', nargs='?', default=default_policy())
    args = ap.parse_args(argv)
    try:
        root = load(args.policy)
    except PolicyError as exc:
        print(exc, file=sys.stderr)
        return 1
    for enclave, rules in grants(root).items():
        print(enclave)
        for qualifier in PERMISSIONS:
            for perm, names in sorted(rules[qualifier].items()):
                print(f'  {qualifier} {perm}: {", ".join(sorted(names))}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
