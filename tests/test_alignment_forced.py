"""Forced alignment: utterance graphs (alignment/forced.py) and the flat-start GMM-HMM (alignment/acoustic.py)."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import pytest
import torch

from pytorch_hmm.alignment import Segment, frames_to_seconds, read_phone_intervals, read_textgrid, write_textgrid
from pytorch_hmm.alignment.acoustic import AcousticModel, TrainingSchedule, train_flat_start
from pytorch_hmm.alignment.forced import PhoneSet, Topology, batch_graph, compile_utterance
from pytorch_hmm.errors import HMMDimensionError, HMMTypeError, HMMValueError
from pytorch_hmm.metrics import boundary_f1
from pytorch_hmm.speech import AudioTextFolder, FeatureExtractor, Lexicon

FIXTURES = Path(__file__).parent / "fixtures" / "folder"


def _two_word_lexicon():
    from pytorch_hmm.speech.lexicon import Pronunciation

    return Lexicon({"a": [Pronunciation(("A",), 0.75), Pronunciation(("AA",), 0.25)], "b": [["B"]]})


def _edges(graph):
    """``{(src, dst): probability}`` of one item's Sparse graph, self-loops left out."""
    t = graph.transitions
    pred, lp = t.predecessors.reshape(-1, t.predecessors.shape[-1]), t.log_probs.reshape(-1, t.log_probs.shape[-1])
    out = {}
    for dst in range(pred.shape[0]):
        for slot in range(pred.shape[1]):
            src = int(pred[dst, slot])
            if src >= 0 and src != dst and lp[dst, slot] > -math.inf:
                out[(src, dst)] = out.get((src, dst), 0.0) + math.exp(float(lp[dst, slot]))
    return out


def _phone_sequences(ug):
    """Every phone sequence through the graph (self-loops skipped) and its probability, by enumeration."""
    g = ug.state_graph()
    edges = _edges(g)
    init, final = g.log_init[0].exp().tolist(), g.log_final[0].exp().tolist()
    found = {}

    def walk(state, prob, seq):
        pos = int(g.positions[0, state])
        seq = seq if seq and seq[-1][0] == pos else seq + [(pos, ug.phones[pos])]
        if final[state] > 0:
            key = tuple(p for _, p in seq)
            found[key] = found.get(key, 0.0) + prob * final[state]
        for (src, dst), p in edges.items():
            if src == state:
                walk(dst, prob * p, seq)

    for state, p in enumerate(init):
        if p > 0:
            walk(state, p, [])
    return found


def test_graph_holds_every_pronunciation_and_optional_silence_with_their_probabilities():
    lex = _two_word_lexicon()
    phone_set = PhoneSet(lex.phones, Topology(1, 1))
    ug = compile_utterance(lex.transcribe("a b"), phone_set, silence_probability=0.3)
    sequences = _phone_sequences(ug)
    assert len(sequences) == 2 * 2 ** 3  # two pronunciations, three optional silences
    for phones, prob in sequences.items():
        silences = sum(p == "sil" for p in phones)
        choice = 0.3 ** silences * 0.7 ** (3 - silences) * (0.75 if "A" in phones else 0.25)
        exits = len(phones) - 1  # every phone but the last leaves its state with probability 1/2
        assert prob == pytest.approx(choice * 0.5 ** exits, rel=1e-6), phones
        words = [p for p in phones if p != "sil"]
        assert words in (["A", "B"], ["AA", "B"])
    assert sum(p / 0.5 ** (len(s) - 1) for s, p in sequences.items()) == pytest.approx(1.0)


def test_silence_probability_zero_and_one():
    lex = _two_word_lexicon()
    phone_set = PhoneSet(lex.phones, Topology(1, 1))
    none = _phone_sequences(compile_utterance(lex.transcribe("a b"), phone_set, silence_probability=0.0))
    assert set(none) == {("A", "B"), ("AA", "B")}
    forced = _phone_sequences(compile_utterance(lex.transcribe("a b"), phone_set, silence_probability=1.0))
    assert set(forced) == {("sil", "A", "sil", "B", "sil"), ("sil", "AA", "sil", "B", "sil")}


def _scores_for(phone_set, frames_per_phone):
    """``(1, T, U)`` unit scores: 0 for the units of the frame's phone, -50 elsewhere."""
    t = sum(n for _, n in frames_per_phone)
    scores = torch.full((1, t, phone_set.num_units), -50.0)
    frame = 0
    for phone, n in frames_per_phone:
        scores[0, frame:frame + n, phone_set.units(phone)] = 0.0
        frame += n
    return scores


def test_viterbi_picks_the_spoken_pronunciation_and_silence():
    lex = _two_word_lexicon()
    phone_set = PhoneSet(lex.phones, Topology(3, 3))
    ug = compile_utterance(lex.transcribe("a b"), phone_set)
    for spoken in (["AA", "B"], ["A", "sil", "B"], ["sil", "A", "B", "sil"]):
        scores = _scores_for(phone_set, [(p, 6) for p in spoken])
        graph = ug.state_graph()
        paths, _ = graph.viterbi(scores)
        segs = graph.segments(paths, graph.path_scores(scores, paths), [list(range(len(ug.phones)))])
        phones, words = ug.segments(segs[0])
        assert [s.unit for s in phones] == spoken
        assert [(s.start, s.end) for s in phones] == [(6 * i, 6 * i + 6) for i in range(len(spoken))]
        assert [s.unit for s in words] == ["a", "b"]
        a = phones[[s.unit for s in phones].index(spoken[0] if spoken[0] != "sil" else spoken[1])]
        assert (words[0].start, words[0].end) == (a.start, a.end)


def test_oov_words_are_aligned_as_the_oov_phone():
    lex = _two_word_lexicon()
    phone_set = PhoneSet(lex.phones)
    ug = compile_utterance(lex.transcribe("a zzyzx b"), phone_set, silence_probability=0.0)
    assert {s for s in _phone_sequences(ug)} == {("A", "spn", "B"), ("AA", "spn", "B")}
    assert ug.word_names == ("a", "zzyzx", "b")


def test_edges_carry_each_units_self_loop_and_exit_split_by_the_choices():
    """Under random per-unit probabilities every state stays with its unit's self-loop
    probability and leaves with its exit probability, shared out over the choices that follow
    (a silence or not, one pronunciation or another): out-edges sum to ``exp(log_exit[u])``
    wherever the utterance cannot end; the edge ids name the unit's self-loop / exit."""
    lex = _two_word_lexicon()
    phone_set = PhoneSet(lex.phones, Topology(2, 3))
    gen = torch.Generator().manual_seed(0)
    p_self = torch.rand(phone_set.num_units, generator=gen, dtype=torch.float64) * 0.8 + 0.1
    ug = compile_utterance(lex.transcribe("a b a"), phone_set, silence_probability=0.3)
    g = batch_graph([ug], p_self.log(), torch.log1p(-p_self), dtype=torch.float64)
    edges = _edges(g)
    units = g.units[0].tolist()
    ids = g.edge_ids[0]
    pred = g.transitions.predecessors[0]
    for state, unit in enumerate(units):
        out = sum(p for (src, _), p in edges.items() if src == state)
        lp = g.transitions.log_probs[0]
        self_slots = (pred[state] == state).nonzero().flatten()
        assert len(self_slots) == 1 and ids[state, self_slots[0]] == 2 * unit
        assert math.exp(float(lp[state, self_slots[0]])) == pytest.approx(float(p_self[unit]), rel=1e-12)
        if g.log_final[0, state] == -math.inf:
            assert out == pytest.approx(1.0 - float(p_self[unit]), rel=1e-12), (state, ug.phones[int(g.positions[0, state])])
        for dst in range(len(units)):
            for slot in range(pred.shape[1]):
                if int(pred[dst, slot]) == state and dst != state:
                    assert int(ids[dst, slot]) == 2 * unit + 1


def test_a_batch_of_graphs_gives_each_utterance_its_own_results():
    """Padding to the longest graph changes nothing: log Z, state posteriors summed onto the
    units and the Viterbi path of each item equal those of the item alone."""
    lex = _two_word_lexicon()
    phone_set = PhoneSet(lex.phones, Topology(3, 3))
    texts = ["a b", "b", "a zzyzx b a"]
    graphs = [compile_utterance(lex.transcribe(t), phone_set, silence_probability=0.4) for t in texts]
    gen = torch.Generator().manual_seed(1)
    lengths = torch.tensor([20, 9, 31])
    scores = torch.randn(3, 31, phone_set.num_units, generator=gen, dtype=torch.float64) * 3
    batch = batch_graph(graphs, dtype=torch.float64)
    assert batch.batch_size == 3 and batch.num_states == max(g.num_states for g in graphs)
    log_z, post, _ = batch.marginals(scores, lengths)
    paths, best = batch.viterbi(scores, lengths)
    for i, g in enumerate(graphs):
        alone = g.state_graph(dtype=torch.float64)
        n = int(lengths[i])
        z1, post1, _ = alone.marginals(scores[i:i + 1, :n], lengths[i:i + 1])
        torch.testing.assert_close(log_z[i:i + 1], z1, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(batch.scatter(post, phone_set.num_units)[i, :n], alone.scatter(post1, phone_set.num_units)[0])
        p1, b1 = alone.viterbi(scores[i:i + 1, :n], lengths[i:i + 1])
        assert torch.equal(paths[i, :n], p1[0]) and (paths[i, n:] == -1).all()
        torch.testing.assert_close(best[i:i + 1], b1, rtol=1e-12, atol=1e-12)


def test_batch_graph_errors():
    lex = _two_word_lexicon()
    phone_set = PhoneSet(lex.phones)
    ug = compile_utterance(lex.transcribe("a"), phone_set)
    with pytest.raises(HMMTypeError, match=r"graphs must be a non-empty sequence of UtteranceGraph"):
        batch_graph([])
    with pytest.raises(HMMTypeError, match=r"graphs must be a non-empty sequence of UtteranceGraph"):
        batch_graph([ug.state_graph()])
    with pytest.raises(HMMDimensionError, match=rf"log_exit must be \(U,\) with U == {phone_set.num_units}"):
        batch_graph([ug], log_exit=torch.zeros(3))
    other = compile_utterance(lex.transcribe("a"), PhoneSet(lex.phones, Topology(1, 1)))
    with pytest.raises(HMMValueError, match=r"graphs must come from one phone set"):
        batch_graph([ug, other])


def test_graph_errors():
    lex = _two_word_lexicon()
    phone_set = PhoneSet(["A"])
    with pytest.raises(HMMValueError, match=r"phone 'B' is not in the phone set"):
        compile_utterance(lex.transcribe("b"), phone_set)
    with pytest.raises(HMMValueError, match=r"has no words"):
        compile_utterance(lex.transcribe("..."), PhoneSet(lex.phones))
    with pytest.raises(HMMValueError, match=r"silence_probability must be in \[0, 1\]"):
        compile_utterance(lex.transcribe("a"), PhoneSet(lex.phones), silence_probability=1.5)


# ---------------------------------------------------------------------------------------
# flat-start training and alignment
# ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fixture_corpus():
    utts = AudioTextFolder(FIXTURES).utterances()
    fe = FeatureExtractor(cmvn="utterance")
    lex = Lexicon.from_cmudict(stress="fold")
    return utts, [fe(u.load_audio()) for u in utts], [lex.transcribe(u.text, u.id) for u in utts], lex


def test_em_never_decreases_the_likelihood_and_transitions_stay_normalised(fixture_corpus):
    utts, feats, trans, lex = fixture_corpus
    model = AcousticModel(PhoneSet(lex.phones), feats[0].shape[1])
    history = train_flat_start(model, feats, trans, TrainingSchedule(6, 1, 3), generator=torch.Generator().manual_seed(0))
    assert len(history) == 9
    for a, b in zip(history[:6], history[1:6]):  # within one model size EM is monotone
        assert b >= a - 1e-4 * abs(a)
    assert torch.allclose(torch.logaddexp(model.log_self, model.log_exit), torch.zeros(model.num_units), atol=1e-5)
    assert model.emission.num_mixtures == 2


def test_alignment_of_the_fixtures_against_their_true_timings(fixture_corpus, tmp_path):
    """Four utterances only, so the bar is low; the benchmark measures a real corpus."""
    utts, feats, trans, lex = fixture_corpus
    model = AcousticModel(PhoneSet(lex.phones), feats[0].shape[1])
    train_flat_start(model, feats, trans, TrainingSchedule(10, 0, 1))
    for u, a, t in zip(utts, model.align(feats, trans), trans):
        assert [w.unit for w in a.words] == list(t.words)
        ref = [Segment(i.phone, i.start, i.end) for i in read_phone_intervals(FIXTURES / "alignments" / f"{u.id}.tsv")]
        duration = ref[-1].end
        phones = frames_to_seconds(a.phones, 0.01, duration=duration)
        words = frames_to_seconds(a.words, 0.01, duration=duration)
        assert boundary_f1(ref, phones, 0.05, label_aware=False).recall >= 0.6, u.id
        path = tmp_path / f"{u.id}.TextGrid"
        write_textgrid(path, {"words": words, "phones": phones}, duration)
        back = read_textgrid(path)
        assert [s.unit for s in back.tiers["words"]] == [w.unit for w in words]
        assert [s.unit for s in back.tiers["phones"]] == [p.unit for p in phones]


def test_an_utterance_too_short_for_its_transcription_is_left_out(fixture_corpus):
    utts, feats, trans, lex = fixture_corpus
    short = feats[0][:5]  # 5 frames cannot hold 27 phones of 3 states
    model = AcousticModel(PhoneSet(lex.phones), feats[0].shape[1])
    history = train_flat_start(model, [short] + feats, [trans[0]] + trans, TrainingSchedule(3, 0, 1))
    assert all(math.isfinite(h) for h in history)
    assert torch.isfinite(model.emission.means).all()
    result = model.align([short] + feats, [trans[0]] + trans)
    assert result[0] is None and all(r is not None for r in result[1:])


@pytest.mark.skipif(shutil.which("flite") is None, reason="needs flite (apt-get install flite)")
def test_flat_start_on_a_small_flite_corpus_finds_most_boundaries(tmp_path):
    from pytorch_hmm.speech.synthetic import build_corpus

    texts = ["The river ran quickly past the old mill this morning.", "She bought three green apples at the market.",
             "A small dog waited patiently by the garden gate.", "We should leave before the evening train departs.",
             "His brother painted the kitchen a pale shade of blue.", "Nobody expected the meeting to last so long.",
             "The children laughed at the clown in the park.", "Please put the heavy boxes near the front door.",
             "Rain fell softly on the roof all through the night.", "They walked along the beach looking for shells."]
    utts = []
    for voice in ("slt", "awb", "rms"):
        utts += list(build_corpus(tmp_path / voice, texts, engine="flite", voice=voice, speaker=voice, progress=False))
    fe = FeatureExtractor(cmvn="utterance")
    from pytorch_hmm.speech import load_audio

    feats = [fe(load_audio(u.audio_path)[0]) for u in utts]
    lex = Lexicon.from_cmudict(stress="fold")
    trans = [lex.transcribe(u.text, u.id) for u in utts]
    model = AcousticModel(PhoneSet(lex.phones), feats[0].shape[1])
    train_flat_start(model, feats, trans, TrainingSchedule(12, 1, 4), generator=torch.Generator().manual_seed(0))
    from pytorch_hmm.aligner import FRAME_OFFSET, FRAME_SHIFT
    from pytorch_hmm.metrics import boundary_mae

    results = model.align(feats, trans)
    refs = [[Segment(i.phone, i.start, i.end) for i in u.intervals] for u in utts]

    def phones_at(offset):
        return [frames_to_seconds(a.phones, FRAME_SHIFT, offset=offset, duration=u.duration) for u, a in zip(utts, results)]

    hyps = phones_at(FRAME_OFFSET)
    recalls = [boundary_f1(r, h, 0.02, label_aware=False).recall for r, h in zip(refs, hyps)]
    assert sum(recalls) / len(recalls) >= 0.75
    # the frame convention: centred frames (offset -5 ms) beat the frame-start convention and a
    # 5 ms shift the other way (a convention error shows as a bias of the boundaries)
    mae = {off: boundary_mae(refs, phones_at(off)) for off in (FRAME_OFFSET, 0.0, -FRAME_OFFSET)}
    assert mae[FRAME_OFFSET] < mae[0.0] < mae[-FRAME_OFFSET], mae


def test_a_saved_model_loads_and_aligns_the_same(fixture_corpus, tmp_path):
    utts, feats, trans, lex = fixture_corpus
    model = AcousticModel(PhoneSet(lex.phones, Topology(3, 5)), feats[0].shape[1], silence_probability=0.4)
    train_flat_start(model, feats, trans, TrainingSchedule(3, 1, 2), generator=torch.Generator().manual_seed(0))
    path = tmp_path / "model.pt"
    model.save(path, features={"kind": "mfcc", "cmvn": "utterance"})
    loaded, features = AcousticModel.load(path)
    assert features == {"kind": "mfcc", "cmvn": "utterance"}
    assert loaded.phone_set.phones == model.phone_set.phones and loaded.phone_set.topology == Topology(3, 5)
    assert loaded.emission.num_mixtures == 2 and loaded.silence_probability == 0.4
    for a, b in zip(model.align(feats, trans), loaded.align(feats, trans)):
        assert a == b


def test_model_files_of_another_kind_or_a_newer_format_are_rejected(tmp_path):
    from pytorch_hmm.alignment import acoustic

    not_a_model = tmp_path / "x.pt"
    not_a_model.write_bytes(b"not a torch file")
    with pytest.raises(HMMValueError, match=r"is not a pytorch_hmm acoustic model file"):
        AcousticModel.load(not_a_model)
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(HMMValueError, match=r"no 'pytorch_hmm.alignment.AcousticModel' header"):
        AcousticModel.load(tmp_path / "other.pt")
    model = AcousticModel(PhoneSet(["A"]), 2)
    model.save(tmp_path / "m.pt")
    data = torch.load(tmp_path / "m.pt", weights_only=True)
    data["format_version"] = acoustic._FORMAT_VERSION + 1
    torch.save(data, tmp_path / "newer.pt")
    with pytest.raises(HMMValueError, match=r"in model format 2; this version .* reads formats up to 1: upgrade"):
        AcousticModel.load(tmp_path / "newer.pt")
    with pytest.raises(HMMValueError, match=r"does not exist"):
        AcousticModel.load(tmp_path / "missing.pt")
