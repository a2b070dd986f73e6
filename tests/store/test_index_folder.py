def test_any_writer_clears_what_a_killed_writer_left(tmp_path) -> None:
    from rag.store.index_folder import IndexFolder

    folder = IndexFolder(tmp_path / "idx")
    with folder.lock(), folder.new_generation() as generation:
        (generation / "manifest.json").write_text("{}")
    (folder.root / "tmp-000002-killed").mkdir()
    (folder.root / "tmp-000002-killed" / "half.npy").write_bytes(b"x")
    (folder.root / "CURRENT.tmp").write_text("gen-000002")
    with folder.lock():  # a run with nothing to write
        pass
    assert sorted(p.name for p in folder.root.iterdir() if not p.name.startswith(".")) == ["CURRENT", "gen-000001"]
    assert folder.current() == folder.root / "gen-000001"
