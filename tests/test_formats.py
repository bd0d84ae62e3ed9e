"""podman's shapes: Go templates, durations, filters (no containers needed)."""

from __future__ import annotations

import pytest

import ocirt
from ocirt import gotemplate, reports

DATA = {"ID": "abc", "Names": ["n1", "n2"], "State": {"Status": "running", "Pid": 5}, "Labels": {"a": "1", "b": "2"}, "Exited": False, "None": None}


@pytest.mark.parametrize(
    "fmt, text",
    [
        ("{{.ID}}", "abc"),
        ("{{.State.Status}} {{.State.Pid}}", "running 5"),
        ("{{json .Names}}", '["n1","n2"]'),
        ("{{.Names | json}}", '["n1","n2"]'),
        ("{{range .Names}}[{{.}}]{{end}}", "[n1][n2]"),
        ('{{join .Names ","}}', "n1,n2"),
        ('{{index .Labels "b"}}', "2"),
        ("{{if .Exited}}yes{{else}}no{{end}}", "no"),
        ("{{.Labels}} {{.Exited}} {{.None}} {{len .Names}}", "map[a:1 b:2] false <no value> 2"),
        ("{{upper .ID}} {{lower .ID}}", "ABC abc"),
        ("x {{- .ID -}} y", "xabcy"),
        ("{{.ID}}\\t{{.ID}}", "abc\tabc"),  # \t typed in a shell is a tab
    ],
)
def test_go_template_forms_scripts_use(fmt, text):
    assert gotemplate.parse(fmt).render(DATA) == text


def test_a_table_template_has_a_header_row_and_aligned_columns():
    table = gotemplate.parse("table {{.ID}}\\t{{.State.Status}}\\t{{.Names}}", {"ID": "CONTAINER ID"})
    assert table.table([DATA, dict(DATA, ID="abcdefabcdef")]) == (
        "CONTAINER ID  STATUS      NAMES\n"
        "abc           running     [n1 n2]\n"
        "abcdefabcdef  running     [n1 n2]\n"
    )


@pytest.mark.parametrize(
    "fmt, words",
    [
        ("{{.Nope}}", "no field 'Nope'"),
        ('{{printf "%s" .ID}}', "'printf' in {{printf \"%s\" .ID}} is not supported"),
        ("{{range .Names}}", "{{range}} without {{end}}"),
        ("{{end}}", "{{end}} with nothing to end"),
        ("{{.ID", "unclosed or stray braces"),
        ("{{else}}", "outside an {{if}}"),
        ("{{range .ID}}{{end}}", "cannot range over str"),
    ],
)
def test_what_a_template_cannot_take_is_named(fmt, words):
    with pytest.raises(ocirt.InvalidArgument) as raised:
        gotemplate.parse(fmt).render(DATA)
    assert words in str(raised.value)


@pytest.mark.parametrize(
    "seconds, words",
    [
        (0.5, "Less than a second"), (1, "1 second"), (59, "59 seconds"), (60, "About a minute"), (119, "About a minute"),
        (120, "2 minutes"), (3599, "59 minutes"), (3600, "About an hour"), (5400, "2 hours"), (47 * 3600, "47 hours"),
        (48 * 3600, "2 days"), (15 * 86400, "2 weeks"), (61 * 86400, "2 months"), (800 * 86400, "2 years"),
    ],
)  # fmt: skip
def test_durations_in_podmans_words(seconds, words):
    assert reports.human_duration(seconds) == words


@pytest.mark.parametrize("spec", ["nokey", "color=red", "status=stopped", "exited=x"])
def test_a_bad_filter_is_named(spec):
    with pytest.raises(ocirt.InvalidArgument, match=f"invalid filter '{spec}'"):
        reports.parse_filters([spec])
