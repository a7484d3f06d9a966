"""Parameter files read the way rcl reads them: key forms, wildcards, order, refusals.

The rclpy tests run the same files through rclpy itself, so the rules here are the ones a
node started with ``--params-file`` applies (on the installed ROS distribution).
"""

import math

import pytest
import yaml

from wam_runtime.core.param_files import (
    doc_sections, file_parameters, fqn, key_matches, load_param_file, merge_sections,
    node_parameters, parameters_for, parse_value, scalar_value, section_node, stray_sections)
from wam_runtime.core.params import ConfigError

# key -> (fully qualified names it applies to, names it does not)
KEY_FORMS = {
    '/**': (['/n', '/a/n', '/a/b/n'], []),
    'n': (['/n'], ['/a/n']),
    '/n': (['/n'], ['/a/n', '/m']),
    '/a/n': (['/a/n'], ['/n', '/b/a/n']),
    'a/n': (['/a/n'], ['/n']),
    '/**/n': (['/n', '/a/n', '/a/b/n'], ['/m', '/a/m']),
    '/*/n': (['/a/n'], ['/n', '/a/b/n']),
    '/*': (['/n', '/m'], ['/a/n']),
    '/a/*': (['/a/n', '/a/m'], ['/n', '/a/b/n']),
    '/a/**': (['/a/n', '/a/b/n'], ['/n', '/b/n']),
    '/**/a/**/n': (['/a/n', '/x/a/n', '/x/a/y/n'], ['/n', '/x/n']),
}


@pytest.mark.parametrize('key', sorted(KEY_FORMS))
def test_key_forms_match_like_rcl(key):
    yes, no = KEY_FORMS[key]
    for name in yes:
        assert key_matches(key, name), (key, name)
    for name in no:
        assert not key_matches(key, name), (key, name)


@pytest.mark.parametrize('key,message', [
    ('n*', "the name 'n\\*'"), ('/**/', 'an empty name'), ('a//n', 'an empty name'),
    ('policy-node', "the name 'policy-node'")])
def test_keys_rcl_refuses_are_refused(key, message):
    with pytest.raises(ConfigError, match=message):
        doc_sections({key: {'ros__parameters': {'x': 1}}})


def test_nested_namespaces_parameters_beside_nodes_and_dotted_names():
    doc = {'a': {'ros__parameters': {'grp': {'x': 1, 'y': {'z': 2}}},
                 'n': {'ros__parameters': {'b': 2}}},
           '/**': {'n': {'ros__parameters': {'c': 3}}}}
    assert doc_sections(doc) == {'a': {'grp.x': 1, 'grp.y.z': 2}, 'a/n': {'b': 2},
                                 '/**/n': {'c': 3}}
    assert node_parameters(doc, 'n', 'a') == {'b': 2, 'c': 3}
    assert node_parameters(doc, 'a') == {'grp.x': 1, 'grp.y.z': 2}


@pytest.mark.parametrize('doc,message', [
    ({}, 'expected a mapping'), ([1], 'expected a mapping'),
    ({'n': {'ros__parameters': None}}, 'must be a mapping'),
    ({'n': {'x': 1}}, 'n/x: expected ros__parameters'),
    ({'ros__parameters': {'x': 1}}, 'needs a node name')])
def test_documents_rcl_refuses_are_refused(doc, message):
    with pytest.raises(ConfigError, match=message):
        doc_sections(doc, 'f.yaml')


def test_every_matching_section_applies_in_file_order():
    doc = {'/**/n': {'ros__parameters': {'a': 1, 'd': 1}},
           '/**': {'ros__parameters': {'a': 2, 'b': 2}},
           'n': {'ros__parameters': {'d': 3}},
           '/a/n': {'ros__parameters': {'e': 4}}}
    values, keys = parameters_for(doc_sections(doc), '/n')
    assert values == {'a': 2, 'b': 2, 'd': 3} and keys == ['/**/n', '/**', 'n']
    assert node_parameters(doc, 'n', '/a') == {'a': 2, 'b': 2, 'd': 1, 'e': 4}


def test_later_files_update_a_known_key_in_its_first_place():
    first = {'/**': {'x': 1}, '/**/n': {'x': 2}}
    second = {'/**': {'x': 3, 'y': 3}, 'n': {'z': 4}}
    merged = merge_sections([first, second])
    assert list(merged) == ['/**', '/**/n', 'n']
    assert parameters_for(merged, '/n')[0] == {'x': 2, 'y': 3, 'z': 4}


def test_sections_written_for_the_node_in_another_namespace_are_refused():
    doc = {'/**': {'ros__parameters': {'a': 1}},
           '/robot1/n': {'ros__parameters': {'b': 2}}}
    assert stray_sections(doc_sections(doc), '/n') == ['/robot1/n']
    with pytest.raises(ConfigError, match=r"\['/robot1/n'\] for n, but none applies in "
                                          r'namespace /'):
        node_parameters(doc, 'n')
    assert node_parameters(doc, 'n', 'robot1') == {'a': 1, 'b': 2}
    doc['/robot2/n'] = {'ros__parameters': {'b': 3}}       # one for each robot: fine
    assert node_parameters(doc, 'n', 'robot2') == {'a': 1, 'b': 3}
    assert node_parameters(doc, 'm') == {'a': 1}            # nothing for m at all: fine


def test_names_and_files(tmp_path):
    assert fqn('', 'n') == '/n' and fqn('a/b', 'n') == fqn('/a/b/', 'n') == '/a/b/n'
    assert section_node('/**/n') == 'n' and section_node('/a/*') is None
    path = tmp_path / 'p.yaml'
    path.write_text('/**/n:\n  ros__parameters: {a: 1}\n')
    assert load_param_file(str(path)) == {'/**/n': {'a': 1}}
    path.write_text('n: [')
    with pytest.raises(ConfigError, match='not valid YAML'):
        load_param_file(str(path))
    with pytest.raises(ConfigError, match='cannot read'):
        load_param_file(str(tmp_path / 'missing.yaml'))


@pytest.mark.ros
def test_rclpy_gives_a_node_what_the_reader_says(tmp_path):
    rclpy = pytest.importorskip('rclpy')
    from rclpy.node import Node
    files = [{'/**/n': {'ros__parameters': {'a': 1, 'd': 1, 'm': 1}},
              '/**': {'ros__parameters': {'a': 2, 'b': 2, 'd': 2}},
              'n': {'ros__parameters': {'c': 3, 'd': 3}},
              '/*/n': {'ros__parameters': {'e': 5}},
              '/x/*': {'ros__parameters': {'f': 6}},
              'x': {'n': {'ros__parameters': {'g': 7}}},
              '/x/**': {'ros__parameters': {'h': 8}},
              '/*': {'ros__parameters': {'j': 10}},
              '/**/x/**/n': {'ros__parameters': {'k': 11, 'grp': {'v': 1}}}},
             {'/**': {'ros__parameters': {'d': 20, 'y': 20}},
              '/x/n': {'ros__parameters': {'a': 21}}}]
    paths = []
    for i, doc in enumerate(files):
        paths.append(tmp_path / f'p{i}.yaml')
        paths[-1].write_text(yaml.safe_dump(doc, sort_keys=False))
    args = ['--ros-args'] + [a for p in paths for a in ('--params-file', str(p))]
    merged = merge_sections(load_param_file(str(p)) for p in paths)
    for namespace in ('', '/x', '/w/x', '/w/x/v'):
        context = rclpy.Context()
        rclpy.init(args=args, context=context)
        try:
            node = Node('n', namespace=namespace, context=context,
                        automatically_declare_parameters_from_overrides=True)
            got = {name: p.value for name, p in node._parameters.items()
                   if name not in ('use_sim_time', 'start_type_description_service')}
            node.destroy_node()
        finally:
            rclpy.shutdown(context=context)
        assert got == parameters_for(merged, fqn(namespace, 'n'))[0], namespace


# Plain YAML scalars as rcl types them (rcl_yaml_param_parser get_value), not as YAML 1.1.
SCALARS = {
    'true': True, 'Yes': True, 'on': True, 'y': True, 'N': False, 'off': False,
    '10': 10, '-3': -3, '+5': 5, '0x1f': 31, '010': 8, '08': 8.0, '9223372036854775808':
    9223372036854775808.0, '1.5': 1.5, '1.': 1.0, '.5': 0.5, '1e3': 1000.0, '-1E-3': -0.001,
    '0x1p3': 8.0, '.inf': math.inf, '-.Inf': -math.inf, 'inf': math.inf,
    'null': 'null', '~': '~', 'Null': 'Null', '1_000': '1_000', '1e400': '1e400',
    'yes please': 'yes please', '0b101': '0b101', 'abc': 'abc',
}


@pytest.mark.parametrize('text', sorted(SCALARS))
def test_plain_scalars_are_typed_as_rcl_types_them(text):
    value = scalar_value(text)
    assert type(value) is type(SCALARS[text]) and value == SCALARS[text]
    assert math.isnan(scalar_value('.nan')) and math.isnan(scalar_value('nan'))


def test_quoted_tagged_empty_and_mixed_values(tmp_path):
    assert parse_value("'10'") == '10' and parse_value('"true"') == 'true'
    assert parse_value('!!str 10') == '10' and parse_value('!!float 10') == 10
    assert parse_value('[1.0, .inf, 1e3]') == [1.0, math.inf, 1000.0]
    assert parse_value('{on: 1}') == {'on': 1}          # keys are names
    path = tmp_path / 'p.yaml'
    path.write_text('/**/n:\n  ros__parameters:\n    a:\n')
    with pytest.raises(ConfigError, match='line 3: no value'):
        load_param_file(str(path))
    path.write_text('/**/n:\n  ros__parameters:\n    a: [1.0, 2]\n')
    with pytest.raises(ConfigError, match=r'/\*\*/n: a: .* must all have one type'):
        load_param_file(str(path))
    path.write_text('/**/n:\n  ros__parameters:\n    a: null\n    b: []\n'
                    '/**/m:\n  ros__parameters:\n    use_sim_time: true\n    c: 1e3\n')
    assert file_parameters(str(path), ('n', 'm')) == {'n': {'a': 'null', 'b': []},
                                                      'm': {'c': 1000.0}}


@pytest.mark.ros
def test_rclpy_types_values_as_the_reader_does(tmp_path):
    rclpy = pytest.importorskip('rclpy')
    from rclpy.node import Node
    texts = sorted(SCALARS) + ['.nan', "'10'", '"yes"', '!!str 10', '!!float 10',
                               '[1.0, .inf]', '[y, n]', '[010, 0x10]', '[null, ~]']
    lines = [f'    p{i}: {t}' for i, t in enumerate(texts)]
    path = tmp_path / 'p.yaml'
    path.write_text('/**:\n  ros__parameters:\n' + '\n'.join(lines) + '\n')
    context = rclpy.Context()
    rclpy.init(args=['--ros-args', '--params-file', str(path)], context=context)
    try:
        node = Node('n', context=context, automatically_declare_parameters_from_overrides=True)
        got = {name: p.value for name, p in node._parameters.items()}
        node.destroy_node()
    finally:
        rclpy.shutdown(context=context)
    want = load_param_file(str(path))['/**']
    for i, text in enumerate(texts):
        ours, theirs = want[f'p{i}'], got[f'p{i}']
        if isinstance(theirs, float) and math.isnan(theirs):
            assert math.isnan(ours), text
            continue
        theirs = list(theirs) if not isinstance(theirs, (str, bool, int, float)) else theirs
        assert (type(ours), ours) == (type(theirs), theirs), text
