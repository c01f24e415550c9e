"""Cross-lingual prior-art search on the real offline multilingual model: a Japanese description of an
English patent ranks that patent first, and an English question finds the Japanese statute's answer."""
from __future__ import annotations

import pytest

import attn_core as ac

# Written for these tests (not translations of the claims): what a Japanese examiner might type.
JA_DESCRIPTIONS = {
    "US08930553B2": "SIPセッションの途中で受信したダイアログ内メッセージを、コンテナが新しいセッションの文脈でアプリケーションに渡す方法",
    "US06859910B2": "ウェブサイトの取引ページを解析し、バナー広告などの簡単な画面からユーザーがサイトを直接操作せずに購入を完了できるようにする方法",
    "US08926509B2": "体に貼り付ける無線の生体センサパッチと、そのデータを受け取る基地局側のチップを備えたシステム",
    "US08927118B2": "インドロカルバゾール骨格とジベンゾフラン基を持つ有機エレクトロルミネッセンス素子用の化合物",
    "US07272630B2": "複数のコンピュータにまたがって同一の可能性があるファイルを、確率的に作業を分割して見つける方法",
    "US20050004974A1": "プリンタなどの機器に組み込まれ、遠隔から提供されるサービスを実行するソフトウェアエージェント",
}
HEAD_CHARS = 5000  # title, abstract, claims and the start of each description: bounded CPU time


@pytest.fixture(scope="module")
def e5_reader(tmp_path_factory):
    return ac.Reader.load(ac.MULTILINGUAL_MODEL_ID, store=ac.ResultStore(tmp_path_factory.mktemp("xl") / "r.sqlite"))


@pytest.fixture(scope="module")
def english_patents(corpus):
    return [ac.document_from_text((corpus / "en" / f"{stem}.txt").read_text(encoding="utf-8")[:HEAD_CHARS],
                                  f"{stem}.txt", "en") for stem in JA_DESCRIPTIONS]


def test_a_japanese_description_finds_its_english_patent(e5_reader, english_patents):
    assert e5_reader.model.info.fallback_reason is None
    for stem, description in JA_DESCRIPTIONS.items():
        ranked = e5_reader.rank(description, english_patents)
        assert ranked[0].document.name == f"{stem}.txt", (stem, [r.document.name for r in ranked])


def test_the_claim_chart_works_across_languages(e5_reader, english_patents):
    query = ac.make_query("SIPコンテナが、ダイアログ途中のメッセージを受信し、新しいセッションとしてアプリケーションに渡す")
    ranked = e5_reader.rank(query.with_elements(["ダイアログ途中のメッセージを受信する",
                                                 "新しいセッションとしてアプリケーションに渡す"]), english_patents)
    assert ranked[0].document.name == "US08930553B2.txt"
    cells = ac.claim_chart_cells(ranked)
    assert len(cells) == 2 and all(row[ac.chart_column(ranked[0])] != "—" for row in cells)


def test_an_english_question_finds_the_japanese_article(e5_reader, corpus):
    text = (corpus / "ja" / "ja_patent_act_tokkyoho_334AC0000000121.txt").read_text(encoding="utf-8")
    start = text.index("\n第六十七条　")  # the term of the patent right and its extension, with neighbours
    act = ac.document_from_text(text[start - 3000:start + 3000], "patent-act-excerpt.txt", "ja")
    result = e5_reader.read(act, "How long does a patent last, and can its term be extended?")
    top = [act.text[p.start:p.end] for p in result.read_first(3)]
    assert any("存続期間" in t for t in top), top
