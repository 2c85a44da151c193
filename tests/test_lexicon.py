"""Address corpus, LM from labels + corpus, and lexicon snapping (pure functions, no model)."""

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vhrdata.synth.addresses import address_corpus, load_gazetteer
from vhrmodel.decoding import CharNgramLM
from vhrmodel.lexicon import Lexicon, SnapSettings, default_lexicon, snap_fields
from vhrmodel.lm import (
    DEFAULT_LM_WEIGHT,
    build_char_lm,
    read_char_lm,
    resolve_lexicon,
    resolve_lm_weight,
    write_char_lm,
    write_tuned,
)


@pytest.fixture(scope="module")
def corpus():
    return list(address_corpus(seed=0))


def test_corpus_names_every_unit_of_both_sets(corpus):
    g = load_gazetteer()
    lines = set(corpus)
    # Real units of vietnamadminunits, in the database's full words: legacy triples and 2025 pairs.
    assert "Phường Phúc Xá, Quận Ba Đình, Thành phố Hà Nội" in lines
    assert "Phường Văn Miếu - Quốc Tử Giám, Thành phố Hà Nội" in lines  # 2025 only
    assert "Đặc khu Vân Đồn, Tỉnh Quảng Ninh" in lines  # 2025 special zone
    legacy = [u for by_d in g.legacy.values() for ws in by_d.values() for u in ws]
    modern = [u for ws in g.modern.values() for u in ws]
    assert len(corpus) == 2 * (len(legacy) + len(modern))
    full = {f"{u.ward_full}, {u.district_full}, {u.province_full}" for u in legacy}
    full |= {f"{u.ward_full}, {u.province_full}" for u in modern}
    assert full <= lines  # every unit, legacy and new
    text = "\n".join(corpus)
    for form in ("P.", "Q.", "TP.HCM", "TX", "H.", "Tp", "Xã", "xã", "Thị trấn", "Huyện Cần Giờ"):
        assert form in text, form
    assert any(line.isupper() for line in corpus)  # case variants
    assert any("Hoà" in line for line in corpus) and any("Hòa" in line for line in corpus)  # tone placement


def test_corpus_is_deterministic_for_a_seed(corpus):
    again = address_corpus(seed=0)
    assert [next(again) for _ in range(500)] == corpus[:500]
    other = address_corpus(seed=1)
    assert [next(other) for _ in range(500)] != corpus[:500]
    with pytest.raises(ValueError):
        next(address_corpus(forms_per_unit=0))


def test_labels_keep_their_share_of_the_counts():
    labels = ["ab"] * 3  # 3 lines x 3 events
    corpus = ["cd"] * 12  # 12 lines x 3 events
    lm = build_char_lm(labels, corpus, order=2, labels_share=0.75)
    sources = {s["name"]: s for s in lm.meta["built"]["sources"]}
    lab, cor = sources["training labels"], sources["vietnamadminunits addresses"]
    assert (lab["lines"], lab["events"], cor["lines"], cor["events"]) == (3, 9, 12, 36)
    # labels: 0.75 * 36 = 27, corpus: 0.25 * 9 = 2.25, divided by the smaller
    assert lab["weight"] == pytest.approx(12.0) and cor["weight"] == 1.0
    unigrams = lm.counts[0][""]
    label_mass = unigrams["a"] + unigrams["b"] + 3 * lab["weight"]  # + the labels' end symbols
    assert label_mass / sum(unigrams.values()) == pytest.approx(0.75)
    assert lm.meta["built"]["labels_share"] == 0.75 and lm.meta["built"]["order"] == 2
    # The corpus adds names the labels never contain, the labels still dominate.
    assert lm.log_prob("c", "d") > lm.log_prob("c", "a")
    assert lm.log_prob("", "a") > lm.log_prob("", "c")


def test_labels_alone_and_share_one_ignore_the_corpus():
    only = build_char_lm(["ab"], None, order=2)
    assert [s["name"] for s in only.meta["built"]["sources"]] == ["training labels"]
    assert only.meta["built"]["sources"][0]["weight"] == 1.0
    assert build_char_lm(["ab"], ["cd"], order=2, labels_share=1.0).vocab == {"a", "b", CharNgramLM.EOS}
    with pytest.raises(ValueError):
        build_char_lm(["ab"], ["cd"], labels_share=0.0)


def test_lm_file_records_its_build_and_old_files_still_load(tmp_path):
    path = write_char_lm(["Quận 1"], tmp_path / "lm.json", order=3, corpus=["Phường Tân Định"], labels_share=0.5)
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["meta"]["built"]["order"] == 3
    assert [s["lines"] for s in data["meta"]["built"]["sources"]] == [1, 1]
    assert [p.name for p in tmp_path.iterdir()] == ["lm.json"]  # no temporary file left
    lm = read_char_lm(path)
    assert resolve_lm_weight(lm, None) == DEFAULT_LM_WEIGHT and resolve_lexicon(lm, None) is False
    old = tmp_path / "old.json"  # written before "meta" existed
    old.write_text(json.dumps({"order": 2, "vocab": "ab", "counts": [{"": {"a": 1}}, {"a": {"b": 1}}]}))
    assert read_char_lm(old).meta == {}
    assert math.isfinite(read_char_lm(old).score("ab"))
    not_lm = tmp_path / "x.json"
    not_lm.write_text("{}")
    with pytest.raises(ValueError):
        write_tuned(not_lm, {"lm_weight": 0.1})
    with pytest.raises(ValueError):
        read_char_lm(not_lm)


def test_tuned_values_become_defaults_unless_given(tmp_path):
    path = write_char_lm(["ab"], tmp_path / "lm.json", order=2)
    out = write_tuned(path, {"lm_weight": 0.3, "lexicon": True, "snap": {"min_score": 70.0}}, tmp_path / "t.json")
    lm = read_char_lm(out)
    assert lm.meta["built"]["sources"][0]["lines"] == 1  # the build record is kept
    assert resolve_lm_weight(lm, None) == 0.3 and resolve_lm_weight(lm, 0.0) == 0.0
    assert resolve_lexicon(lm, None) is True and resolve_lexicon(lm, False) is False
    assert read_char_lm(path).meta.get("tuned") is None  # the source file is untouched
    # the width tune-lm measured at is the default too, so predict reads as the tuned figures say
    from vhrmodel.lm import DEFAULT_BEAM_WIDTH, resolve_beam_width

    wide = read_char_lm(write_tuned(path, {"lm_weight": 0.1, "tuned_on": {"beam_width": 25}}, tmp_path / "w.json"))
    assert resolve_beam_width(wide, None) == 25 and resolve_beam_width(wide, 4) == 4
    assert resolve_beam_width(lm, None) == resolve_beam_width(None, None) == DEFAULT_BEAM_WIDTH == 10


LEX = Lexicon({"ward": ["Tân Định", "Tân Bình", "Bến Nghé"], "district": ["Bình Thạnh", "Gò Vấp"],
               "province": ["Hồ Chí Minh", "Hà Nội", ("HCM", "Hồ Chí Minh")]})


def confidences(text, low=(), value=0.4):
    """0.99 per character, `value` on the characters of each substring in `low`."""
    conf = [0.99] * len(text)
    for part in low:
        start = text.index(part)
        conf[start : start + len(part)] = [value] * len(part)
    return conf


def test_snap_fixes_a_low_confidence_misspelled_ward_and_keeps_the_prefix():
    text = "Số 12 Lê Lợi, P. Tân Đnh, Quận 1, TP Hồ Chí Minh"
    fixed, snaps = snap_fields(text, confidences(text, ["Đnh"]), LEX)
    assert fixed == "Số 12 Lê Lợi, P. Tân Định, Quận 1, TP Hồ Chí Minh"
    assert [(s.field, s.before, s.after) for s in snaps] == [(1, "P. Tân Đnh", "P. Tân Định")]
    text = "Phường Ben Nghé,Q. Gò Vap"
    fixed, _ = snap_fields(text, confidences(text, ["Ben", "Vap"]), LEX)
    assert fixed == "Phường Bến Nghé,Q. Gò Vấp"
    text = "Gò Vap"  # without a prefix only provinces are candidates
    assert snap_fields(text, confidences(text, ["Vap"]), LEX) == (text, [])
    text = "PHƯỜNG TÂN ĐNH"
    assert snap_fields(text, confidences(text, ["ĐNH"]), LEX)[0] == "PHƯỜNG TÂN ĐỊNH"


def test_snap_leaves_a_high_confidence_field_alone():
    text = "P. Tân Đnh, Hà Nội"
    assert snap_fields(text, confidences(text), LEX) == (text, [])
    # "mean" confidence: one weak character among strong ones is not enough.
    mean = SnapSettings(confidence="mean", max_confidence=0.9)
    assert snap_fields(text, confidences(text, ["Đ"]), LEX, mean) == (text, [])
    assert snap_fields(text, confidences(text, ["Đ"]), LEX)[0] == "P. Tân Định, Hà Nội"  # "min" snaps


def test_snap_refuses_an_ambiguous_match():
    text = "Phường Tân Đình"  # as close to "Tân Định" as to "Tân Bình"
    assert snap_fields(text, confidences(text, ["Tân Đình"]), LEX) == (text, [])
    assert snap_fields(text, confidences(text, ["Tân Đình"]), LEX, SnapSettings(min_margin=0))[0] != text


def test_snap_keeps_unknown_numbered_and_short_fields():
    text = "Thôn Đông, Phường 3, Quận 5, Xã Lạ Lùng Quá, Hà Nộ"
    conf = [0.1] * len(text)
    assert snap_fields(text, conf, LEX, SnapSettings(min_chars=5)) == (text, [])  # "Hà Nộ" has 4 letters
    assert snap_fields(text, conf, LEX)[0] == "Thôn Đông, Phường 3, Quận 5, Xã Lạ Lùng Quá, Hà Nội"
    assert snap_fields("", [], LEX) == ("", [])
    with pytest.raises(ValueError):
        snap_fields("abc", [0.5], LEX)


def test_snap_counts_spellings_of_one_name_as_one():
    # "HCM" and "Hồ Chí Minh" are one province: no margin problem, the written form closest wins.
    text = "Quận 1, HCN"
    assert snap_fields(text, confidences(text, ["HCN"]), LEX, SnapSettings(min_chars=3, min_score=60))[0] == \
        "Quận 1, HCM"


def test_default_lexicon_knows_real_units_of_both_sets():
    lex = default_lexicon()
    for name in ("Phúc Xá", "Văn Miếu - Quốc Tử Giám", "Vân Đồn"):
        assert name in lex.forms["ward"]
    assert "Cần Giờ" in lex.forms["district"] and "Hồ Chí Minh" in lex.forms["province"]
    assert "Hoà Bình" in lex.forms["province"]  # old tone placement too
    text = "Phường Văn Miếu - Quốc Tử Giam, Hà Nội"
    assert snap_fields(text, confidences(text, ["Giam"]), lex)[0] == "Phường Văn Miếu - Quốc Tử Giám, Hà Nội"
    assert SnapSettings.from_dict(SnapSettings().to_dict()) == SnapSettings()
    with pytest.raises(ValueError):
        SnapSettings.from_dict({"min_scor": 3})


# Two provinces with a district and wards each; "Tân Hòa" and "Tân Hoà" exist in both, "Phước Tân"
# only in Khánh Hoà, "Phúc Tân" only in Hà Nội.
TREE = {
    "Khánh Hoà": {"Nha Trang": ["Phước Tân", "Phước Hải", "Tân Lập"], "Cam Lâm": ["Cam Đức"]},
    "Hà Nội": {"Hoàn Kiếm": ["Phúc Tân", "Hàng Bạc", "Tân Lập"], "Ba Vì": ["Tản Lĩnh"], "": ["Tây Tựu"]},
}


def tree_lexicon():
    names = {"ward": sorted({w for ds in TREE.values() for ws in ds.values() for w in ws}),
             "district": sorted({d for ds in TREE.values() for d in ds if d}), "province": sorted(TREE)}
    return Lexicon(names, tree=TREE)


def test_hierarchy_narrows_wards_to_the_province_and_district_read_at_the_end_of_the_line():
    lex = tree_lexicon()
    low = SnapSettings(max_confidence=1.01)
    # "Phúc Tân" vs "Phước Tân": one letter apart; globally "Phuc Tan" is ambiguous between them
    text = "Số 9, Phường Phuc Tan, TP Nha Trang, Khánh Hoà"
    flat, _ = snap_fields(text, [0.5] * len(text), lex, SnapSettings(max_confidence=1.01, hierarchy=False))
    assert flat == text  # ambiguous among all wards: left alone
    fixed, snaps = snap_fields(text, [0.5] * len(text), lex, low)
    assert fixed == "Số 9, Phường Phước Tân, TP Nha Trang, Khánh Hoà"
    assert [s.field for s in snaps] == [1]
    text = "Số 9, Phường Phuc Tan, Quận Hoàn Kiếm, Hà Nội"
    assert snap_fields(text, [0.5] * len(text), lex, low)[0] == "Số 9, Phường Phúc Tân, Quận Hoàn Kiếm, Hà Nội"
    # a misread district is snapped within its province first, then narrows the ward
    text = "Phường Phuc Tan, Quận Hân Kếm, Hà Nội"
    assert snap_fields(text, [0.5] * len(text), lex, low)[0] == "Phường Phúc Tân, Quận Hoàn Kiếm, Hà Nội"
    # "Hân Kếm" scores 75 against "Hoàn Kiếm": enough within Hà Nội, not enough on its own
    strict = SnapSettings(max_confidence=1.01, min_score_within=80)
    assert snap_fields(text, [0.5] * len(text), lex, strict)[0] == text


def test_hierarchy_reads_unprefixed_fields_before_the_province_as_its_districts_and_wards():
    lex = tree_lexicon()
    text = "Thôn 2, Tản Lnh, Ba Vì, Hà Nội"
    low = SnapSettings(max_confidence=1.01)
    assert snap_fields(text, [0.5] * len(text), lex, low)[0] == "Thôn 2, Tản Lĩnh, Ba Vì, Hà Nội"
    # without the hierarchy an unprefixed field is matched against provinces only
    assert snap_fields(text, [0.5] * len(text), lex, SnapSettings(max_confidence=1.01, hierarchy=False))[0] == text
    # an unknown province narrows nothing
    text = "Phường Phuc Tan, Quận Hoàn Kiếm, Đà Lạt Xa"
    assert snap_fields(text, [0.99] * len(text), lex, SnapSettings(max_confidence=0.5)) == (text, [])


def test_settings_tuned_before_the_hierarchy_keep_their_behaviour():
    old = {"min_score": 80.0, "min_margin": 6.0, "max_confidence": 0.9, "confidence": "min", "min_chars": 4}
    assert SnapSettings.from_dict(old).hierarchy is False and SnapSettings.from_dict(old).prefixes is False
    assert SnapSettings.from_dict({**old, "hierarchy": True}).hierarchy is True
    assert SnapSettings().hierarchy is True
    with pytest.raises(ValueError, match="min_score_within"):
        SnapSettings(min_score_within=120)
    from vhrmodel.tune import snap_settings_grid

    grid = snap_settings_grid({"min_score": (80.0,), "hierarchy": (False, True), "min_score_within": (60.0, 70.0)})
    assert [(s.hierarchy, s.min_score_within) for s in grid] == [(False, 60.0), (True, 60.0), (True, 70.0)]


def test_units_in_labels_read_province_district_and_ward_by_their_prefixes():
    from vhrmodel.lexicon import split_unit_prefix, units_in_labels

    labels = ["Số 9, Phường Phước Tân, Thành phố Nha Trang, Khánh Hoà",
              "Tổ 4, P. Trưng Trắc, TX Phúc Yên, Vĩnh Phúc",
              "Thôn 1, Xã Cam Đức, Huyện Cam Lâm, Tỉnh Khánh Hoà",
              "12 Lê Lợi, Phường 12, Quận 5, TP Hồ Chí Minh",
              "Thôn Đông, Huyện Ba Vì, Hà Nội",  # no ward field
              "Số 9 đường Lê Lợi",  # not an address line
              "Số 9, Phường Phước Tân, Thành phố Nha Trang, Khánh Hoà"]  # twice: once
    assert units_in_labels(labels) == [
        ("Hà Nội", "Ba Vì", ""), ("Hồ Chí Minh", "5", "12"), ("Khánh Hoà", "Cam Lâm", "Cam Đức"),
        ("Khánh Hoà", "Nha Trang", "Phước Tân"), ("Vĩnh Phúc", "Phúc Yên", "Trưng Trắc")]
    assert split_unit_prefix("Thành phố Nha Trang") == ("Thành phố ", "Nha Trang", frozenset({"district", "province"}))
    assert split_unit_prefix("Nha Trang") == ("", "Nha Trang", frozenset({"province"}))


def test_units_of_the_training_labels_travel_in_the_lm_and_extend_the_lexicon(tmp_path):
    from vhrmodel.lexicon import lexicon_for

    labels = ["Số 9, Phường Trưng Trắc, Thị xã Phúc Yên, Vĩnh Phúc"]  # a ward merged away in 2019
    path = write_char_lm(labels, tmp_path / "lm.json", order=3)
    lm = read_char_lm(path)
    assert lm.meta["units"] == [["Vĩnh Phúc", "Phúc Yên", "Trưng Trắc"]]
    base = default_lexicon()
    province = base.resolve("Vĩnh Phúc", "province")
    assert "Trưng Trắc" not in base.within(province, "phúc yên", {"ward"})  # the gazetteer holds today's wards
    lex = lexicon_for(lm)
    assert lexicon_for(lm) is lex  # built once
    assert lexicon_for(None) is base and lexicon_for(build_char_lm(["abc"], order=2)) is base
    assert "Trưng Trắc" in lex.within(province, "phúc yên", {"ward"})
    text = "Số 9, Phường Trung Trắc, Thị xã Phúc Yên, Vĩnh Phúc"
    assert snap_fields(text, [0.5] * len(text), lex)[0] == labels[0]
    # a unit of an unknown province is skipped
    assert Lexicon.from_gazetteer().add_units([("Xứ Sở Thần Tiên", "Nơi Nào", "Đó")]) == 0


def test_a_misread_prefix_is_repaired_and_then_chooses_the_candidates():
    from vhrmodel.lexicon import repair_prefix

    assert repair_prefix("Thành phối Nha Trang") == ("Thành phố ", "Nha Trang")
    assert repair_prefix("Huện Ba Vì") == ("Huyện ", "Ba Vì")
    assert repair_prefix("huện Ba Vì") == ("huyện ", "Ba Vì")  # the line's case
    for street in ("Đường Láng", "Khu phố 4", "Thôn Đông", "Phố Huế", "Tổ 4", "Phường"):
        assert repair_prefix(street) is None, street
    lex = tree_lexicon()
    text = "Số 9, Pường Phuc Tan, Thành phối Nha Trang, Khánh Hoà"
    low = SnapSettings(max_confidence=1.01)
    fixed, snaps = snap_fields(text, [0.5] * len(text), lex, low)
    assert fixed == "Số 9, Phường Phước Tân, Thành phố Nha Trang, Khánh Hoà"
    assert [(s.before, s.after) for s in snaps] == [("Pường Phuc Tan", "Phường Phước Tân"),
                                                    ("Thành phối Nha Trang", "Thành phố Nha Trang")]
    # off, or read confidently, or before the last three fields: left as written
    assert snap_fields(text, [0.5] * len(text), lex, SnapSettings(max_confidence=1.01, prefixes=False))[0] != fixed
    # prefixes read with confidence stay, so the fields keep no known prefix and nothing is snapped
    sure = confidences(text, ["Phuc Tan"])
    assert snap_fields(text, sure, lex, SnapSettings(max_confidence=0.9)) == (text, [])
    early = "Huện Ba, Số 9, Phường Tân Lập, Quận Hoàn Kiếm, Hà Nội"
    assert snap_fields(early, [0.5] * len(early), lex, low)[0].startswith("Huện Ba, ")


def test_the_match_memo_is_bounded_for_servers_that_read_without_end(monkeypatch):
    import vhrmodel.lexicon as lexicon_module

    monkeypatch.setattr(lexicon_module, "MATCH_MEMO_SIZE", 2)
    lex = tree_lexicon()
    names = ["Phuc Tan", "Phuoc Hai", "Tan Lap", "Cam Duc", "Phuc Tan"]
    results = [lex.match(n, {"ward"}) for n in names]
    assert len(lex._matches) <= 2
    assert results[0] == results[-1] and results[0][0] in ("Phúc Tân", "Phước Tân")
    assert [r[0] for r in results[1:4]] == ["Phước Hải", "Tân Lập", "Cam Đức"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(["Phường", "P.", "Huện", "Thành phối", "Quận", "Hà Nội", "Khánh Hoà", "Phuc Tan",
                                 "Nha Trang", "Hoàn Kiếm", "12", "Tân", ",", ", ", " ", "", "x", "Thị", "xã"]),
                max_size=14),
       st.floats(min_value=0.0, max_value=1.0))
def test_snap_never_breaks_a_line_whatever_its_fields(parts, conf):
    lex = tree_lexicon()
    text = " ".join(parts)
    out, snaps = snap_fields(text, [conf] * len(text), lex, SnapSettings(max_confidence=1.01, min_score_within=50))
    assert out.count(",") == text.count(",")  # fields are never merged, split or dropped
    assert [s.field for s in snaps] == sorted({s.field for s in snaps})
    for s in snaps:
        assert s.before in text and s.after in out
    # nothing is snapped where the model was sure
    assert snap_fields(text, [conf] * len(text), lex, SnapSettings(max_confidence=0.0)) == (text, [])


def line_scores(table, default=-100.0):
    """A rescoring scorer: whole line -> its score from `table` (else `default`); records its calls."""
    calls = []

    def scorer(lines):
        calls.append(list(lines))
        return [table.get(line, default) for line in lines]

    scorer.calls = calls
    return scorer


def test_rescoring_lets_the_scorer_choose_among_the_nearest_names_of_the_narrowed_list():
    lex = tree_lexicon()
    rescore = SnapSettings(rescore=True, max_confidence=1.01, unit_bonus=4.0)
    text = "Số 9, Phường Phước Tan, TP Nha Trang, Khánh Hoà"
    # String scores put "Phước Tân" first; the model read "Phước Hải" better: the model wins.
    hai = "Số 9, Phường Phước Hải, TP Nha Trang, Khánh Hoà"
    scorer = line_scores({text: -10.0, hai: -12.0, "Số 9, Phường Phước Tân, TP Nha Trang, Khánh Hoà": -30.0})
    out, snaps = snap_fields(text, [0.5] * len(text), lex, rescore, scorer=scorer)
    assert out == hai
    assert [(s.field, s.before, s.after) for s in snaps] == [(1, "Phường Phước Tan", "Phường Phước Hải")]
    assert snaps[0].margin == 2.0  # the score gain: -12 + 4 (a unit) against -10 (not a unit)
    # The ward field is rescored last (fields are read from the end; "Số 9" has a digit). Its
    # candidates were Nha Trang's wards only: Hà Nội's "Phúc Tân" scores 71, "Phước Hải" 67.
    # (Every province is tried for the last field, so readings ending in Hà Nội are scored too,
    # each with its own narrowed list.)
    ward_call = [line for line in scorer.calls[-1] if line.endswith(", TP Nha Trang, Khánh Hoà")]
    assert {line.split(",")[1].strip() for line in ward_call} == {"Phường Phước Tân", "Phường Phước Hải"}
    # The line as read was scored once, first; no line is scored twice.
    assert scorer.calls[0][0] == text
    lines = [line for call in scorer.calls for line in call]
    assert len(lines) == len(set(lines))
    # Every line scored keeps the other fields and the prefixes as written.
    assert all(line.startswith("Số 9, Phường ") and ", TP " in line for call in scorer.calls for line in call)


def test_rescoring_keeps_the_field_unless_a_name_beats_it_by_less_than_the_unit_bonus():
    lex = tree_lexicon()
    text = "Phường Phước Tan, TP Nha Trang, Khánh Hoà"
    tan = "Phường Phước Tân, TP Nha Trang, Khánh Hoà"
    scorer = line_scores({text: -10.0, tan: -14.0})
    conf = [0.5] * len(text)
    assert snap_fields(text, conf, lex, SnapSettings(rescore=True, max_confidence=1.01, unit_bonus=5.0),
                       scorer=scorer)[0] == tan
    # a tie keeps the field as read
    assert snap_fields(text, conf, lex, SnapSettings(rescore=True, max_confidence=1.01, unit_bonus=4.0),
                       scorer=scorer) == (text, [])
    assert snap_fields(text, conf, lex, SnapSettings(rescore=True, max_confidence=1.01, unit_bonus=0.0),
                       scorer=scorer) == (text, [])
    # a confidently read field is not rescored, and a line the scorer rules out (-inf) never wins
    assert snap_fields(text, [0.99] * len(text), lex, SnapSettings(rescore=True, max_confidence=0.9, unit_bonus=50.0),
                       scorer=scorer) == (text, [])
    assert snap_fields(text, conf, lex, SnapSettings(rescore=True, max_confidence=1.01, unit_bonus=50.0),
                       scorer=line_scores({text: -10.0}, default=-math.inf)) == (text, [])
    # a field that already names a unit gets the bonus too: only the scorer can move it
    known = "Phường Phước Hải, TP Nha Trang, Khánh Hoà"
    assert snap_fields(known, [0.5] * len(known), lex, SnapSettings(rescore=True, max_confidence=1.01, unit_bonus=50.0),
                       scorer=line_scores({known: -10.0, tan: -11.0}))[0] == known


def test_rescoring_reads_the_province_first_and_narrows_by_what_it_chose():
    lex = tree_lexicon()
    text = "Phường Phuc Tan, Quận Hoàn Kiếm, Hà Nọi"
    fixed_province = "Phường Phuc Tan, Quận Hoàn Kiếm, Hà Nội"
    best = "Phường Phúc Tân, Quận Hoàn Kiếm, Hà Nội"
    scorer = line_scores({text: -5.0, fixed_province: -6.0, best: -7.0})
    out, snaps = snap_fields(text, [0.5] * len(text), lex, SnapSettings(rescore=True, max_confidence=1.01),
                             scorer=scorer)
    assert out == best and [s.field for s in snaps] == [0, 2]


def test_rescoring_settings_are_checked_and_old_settings_do_not_rescore():
    with pytest.raises(ValueError, match="needs a scorer"):
        snap_fields("Hà Nọi", [0.5] * 6, tree_lexicon(), SnapSettings(rescore=True))
    with pytest.raises(ValueError, match="unit_bonus"):
        SnapSettings(unit_bonus=-1.0)
    old = {"min_score": 80.0, "min_margin": 6.0, "max_confidence": 0.9, "confidence": "min", "min_chars": 4,
           "hierarchy": True, "min_score_within": 70.0, "prefixes": True}
    assert SnapSettings.from_dict(old).rescore is False
    again = SnapSettings(rescore=True, unit_bonus=8.0)
    assert SnapSettings.from_dict(again.to_dict()) == again


def test_nearest_gives_one_spelling_per_name_best_first():
    lex = tree_lexicon()
    near = lex.nearest("Phước Tan", {"ward"})
    names = [form for form, _ in near]
    assert names[:3] == ["Phước Tân", "Phúc Tân", "Phước Hải"]
    assert [score for _, score in near] == sorted((score for _, score in near), reverse=True)
    assert lex.nearest("Phước Tan", {"ward"}, limit=1) == near[:1]
    # two spellings of one name count once, as the better-scoring one
    spelled = Lexicon({"province": ["Hà Nội", ("Ha Noi", "Hà Nội"), "Hà Nam"]})
    assert [form for form, _ in spelled.nearest("Ha Noi", {"province"})] == ["Ha Noi", "Hà Nam"]
    assert lex.nearest("Zzzzzz", {"ward"}) == []  # nothing scores 50
    assert lex.names_unit("phước tân", {"ward"}) and not lex.names_unit("Phước Tân", {"province"})
    assert lex.names_unit("Hoàn Kiếm", {"district"}, lex.within(lex.resolve("Hà Nội", "province"), None,
                                                                   {"district"}))


def test_rescoring_chooses_the_province_together_with_the_district_that_fits_it(monkeypatch):
    lex = tree_lexicon()
    text = "Quận Hoàn Kiếm, Khánh Nội"  # the province misread; the district read well
    khanh_hoa, ha_noi = "Quận Hoàn Kiếm, Khánh Hoà", "Quận Hoàn Kiếm, Hà Nội"
    scorer = line_scores({text: -10.0, khanh_hoa: -11.0, ha_noi: -12.0})
    conf = [0.5] * len(text)
    # The model alone slightly prefers "Khánh Hoà", which has no Hoàn Kiếm; Hà Nội has it: each
    # unit name that fits the fields read after it is worth the bonus, so the reading that
    # fits wins.
    out, snaps = snap_fields(text, conf, lex, SnapSettings(rescore=True, max_confidence=1.01, unit_bonus=4.0),
                             scorer=scorer)
    assert out == ha_noi and [s.field for s in snaps] == [1]
    # Keeping one reading at a time decides the province alone, and gets it wrong.
    monkeypatch.setattr("vhrmodel.lexicon.RESCORE_BEAM", 1)
    assert snap_fields(text, conf, lex, SnapSettings(rescore=True, max_confidence=1.01, unit_bonus=4.0),
                       scorer=scorer)[0] == khanh_hoa


def test_rescoring_tries_every_province_for_the_last_field_and_only_there():
    lex = Lexicon({"province": ["Phú Thọ", "Bến Tre", "Đắc Lắc"], "district": ["Phù Ninh", "Ba Tri", "Krông Pắc"]},
                  tree={"Phú Thọ": {"Phù Ninh": []}, "Bến Tre": {"Ba Tri": []}, "Đắc Lắc": {"Krông Pắc": []}})
    text = "Huyện Phù Ninh, Đắc Tre"  # "Phú Thọ" shares too few letters with the misread field to be near it
    assert "Phú Thọ" not in [form for form, _ in lex.nearest("Đắc Tre", {"province"})]
    right = "Huyện Phù Ninh, Phú Thọ"
    scorer = line_scores({text: -10.0, "Huyện Phù Ninh, Bến Tre": -12.0, right: -13.0})
    out, _ = snap_fields(text, [0.5] * len(text), lex, SnapSettings(rescore=True, max_confidence=1.01,
                                                                    unit_bonus=4.0), scorer=scorer)
    assert out == right  # the province that holds the district read before it
    assert {line.rsplit(", ", 1)[1] for line in scorer.calls[0]} == {"Đắc Tre", "Phú Thọ", "Bến Tre", "Đắc Lắc"}
    # a field that is not last (a province-prefixed field before another) keeps the nearest names only
    text = "Tỉnh Đắc Tre, Phú Thọ"
    scorer = line_scores({text: -10.0})
    snap_fields(text, [0.5] * len(text), lex, SnapSettings(rescore=True, max_confidence=1.01), scorer=scorer)
    tried = {line.split(",")[0] for call in scorer.calls for line in call}
    assert "Tỉnh Phú Thọ" not in tried and "Tỉnh Bến Tre" in tried


def test_rescoring_reads_house_number_fields_against_street_names():
    from dataclasses import replace

    lex = Lexicon({"province": ["Hà Nội"], "street": ["Lê Lợi", "Lê Lai"]})
    text = "Số 12 Lê Lọi, Hà Nội"
    fixed = "Số 12 Lê Lợi, Hà Nội"
    scorer = line_scores({text: -10.0, fixed: -11.0, "Số 12 Lê Lai, Hà Nội": -13.0})
    conf = [0.5] * len(text)
    on = SnapSettings(rescore=True, max_confidence=1.01, streets=True, street_bonus=2.0)
    out, snaps = snap_fields(text, conf, lex, on, scorer=scorer)
    assert out == fixed and [(s.before, s.after) for s in snaps] == [("Số 12 Lê Lọi", "Số 12 Lê Lợi")]
    # streets off (the default, and settings stored before streets existed): the field is left alone
    assert snap_fields(text, conf, lex, replace(on, streets=False), scorer=scorer) == (text, [])
    assert SnapSettings.from_dict({k: v for k, v in on.to_dict().items() if k not in ("streets", "street_bonus")}
                                  ).streets is False
    # no bonus: the scorer alone prefers the field as read
    assert snap_fields(text, conf, lex, replace(on, street_bonus=0.0), scorer=scorer) == (text, [])
    with pytest.raises(ValueError, match="street_bonus"):
        SnapSettings(street_bonus=-1.0)


def test_streets_come_from_the_generator_and_the_training_labels_beside_an_lm():
    from vhrmodel.lexicon import lexicon_for, split_street, streets_in_labels

    assert split_street("458/10/11 Huỳnh Tấn Phát") == ("458/10/11 ", "Huỳnh Tấn Phát")
    assert split_street("Số 9 đường Láng") == ("Số 9 đường ", "Láng")
    for field in ("Phường 12", "Số nhà 52", "62 - 64 Bùi Thị Xuân", "7A28/1 ấp 7", "Thôn Nứa"):
        assert split_street(field) is None, field
    labels = ["Số 9 Phố Huế Mới, Phường 2, Quận 1, TP Hồ Chí Minh", "Thôn 2, Xã An Bình, Huyện Ba Vì, Hà Nội"]
    assert streets_in_labels(labels) == ["Huế Mới"]
    lm = build_char_lm(labels, order=3)
    assert lm.meta["streets"] == ["Huế Mới"]
    lexicon = lexicon_for(lm)
    assert lexicon.names_unit("huế mới", {"street"}) and lexicon.names_unit("Trần Phú", {"street"})
    assert not default_lexicon().names_unit("Huế Mới", {"street"})  # only beside that LM
