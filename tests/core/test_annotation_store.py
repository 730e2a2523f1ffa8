"""AnnotationStore: undoable add/remove/edit/clear, events, selection; the UndoStack itself."""

from dataclasses import replace

import pytest

from radview.core.annotation_store import AnnotationStore
from radview.core.annotations import Annotation, AnnotationKind
from radview.core.undo import FunctionCommand, UndoStack
from radview.core.volume import ViewPlane


def ruler(x: float = 0.0, label: str = "") -> Annotation:
    return Annotation(AnnotationKind.RULER, ViewPlane.AXIAL, 3,
                      ((x, 0.0, 0.0), (x + 10.0, 0.0, 0.0)), label=label)


def ellipse() -> Annotation:
    return Annotation(AnnotationKind.ELLIPSE, ViewPlane.CORONAL, 7,
                      ((0.0, 5.0, 0.0), (8.0, 5.0, 6.0)))


class Recorder:
    """Collects what the store's signals carried."""

    def __init__(self, store: AnnotationStore) -> None:
        self.changes: list[tuple[Annotation, ...]] = []
        self.selections: list[str | None] = []
        store.changed.connect(self.changes.append)
        store.selected_id_changed.connect(self.selections.append)


@pytest.fixture
def store() -> AnnotationStore:
    return AnnotationStore()


def ids(store: AnnotationStore) -> list[str]:
    return [a.id for a in store.annotations]


# ---------------------------------------------------------------------------- edits + undo
def test_add_undo_redo(store: AnnotationStore) -> None:
    events = Recorder(store)
    a, b = ruler(), ellipse()
    store.add(a)
    store.add(b)
    assert store.annotations == (a, b) and len(store) == 2
    assert events.changes == [(a,), (a, b)]
    assert store.can_undo and not store.can_redo and store.undo_text == "add ellipse"
    assert store.undo()
    assert store.annotations == (a,) and store.can_redo and store.redo_text == "add ellipse"
    assert store.redo()
    assert store.annotations == (a, b)
    assert events.changes[-2:] == [(a,), (a, b)]


def test_remove_and_undo_restores_the_position(store: AnnotationStore) -> None:
    first, middle, last = ruler(1), ellipse(), ruler(2)
    for annotation in (first, middle, last):
        store.add(annotation)
    store.remove(middle.id)
    assert store.annotations == (first, last) and middle.id not in store
    assert store.undo_text == "delete ellipse"
    store.undo()
    assert store.annotations == (first, middle, last)
    store.redo()
    assert store.annotations == (first, last)


def test_replace_is_an_undoable_edit(store: AnnotationStore) -> None:
    original = ruler()
    store.add(original)
    moved = replace(original, points=((1.0, 2.0, 3.0), (4.0, 5.0, 6.0)), label="L1")
    store.replace(moved)
    assert store.get(original.id) == moved and store.undo_text == "edit ruler"
    store.undo()
    assert store.get(original.id) == original
    store.redo()
    assert store.get(original.id) == moved


def test_replace_with_an_equal_annotation_records_nothing(store: AnnotationStore) -> None:
    a = ruler()
    store.add(a)
    events = Recorder(store)
    store.replace(replace(a))
    assert events.changes == [] and len(store._history) == 1


def test_clear_is_one_undoable_step(store: AnnotationStore) -> None:
    a, b = ruler(), ellipse()
    store.add(a)
    store.add(b)
    store.clear()
    assert store.annotations == ()
    store.undo()
    assert store.annotations == (a, b)
    events = Recorder(store)
    AnnotationStore().clear()  # nothing to clear: no step
    store.redo()
    assert events.changes == [()]


def test_a_new_edit_discards_redo(store: AnnotationStore) -> None:
    store.add(ruler())
    store.undo()
    assert store.can_redo
    store.add(ellipse())
    assert not store.can_redo
    assert not store.redo()


def test_undo_and_redo_with_empty_history_do_nothing(store: AnnotationStore) -> None:
    events = Recorder(store)
    assert not store.undo() and not store.redo()
    assert events.changes == []


def test_invalid_edits_raise_and_record_nothing(store: AnnotationStore) -> None:
    a = ruler()
    store.add(a)
    with pytest.raises(ValueError, match="already"):
        store.add(a)
    with pytest.raises(KeyError):
        store.remove("nope")
    with pytest.raises(KeyError):
        store.replace(ruler())  # a new id
    with pytest.raises(TypeError):
        store.add("ruler")  # type: ignore[arg-type]
    assert len(store._history) == 1 and store.annotations == (a,)


def test_history_is_capped_at_100_steps() -> None:
    store = AnnotationStore()
    for n in range(105):
        store.add(ruler(n))
    undone = 0
    while store.undo():
        undone += 1
    assert undone == 100
    assert len(store) == 5  # the first five adds can no longer be undone


# ---------------------------------------------------------------------------- loading
def test_load_replaces_everything_without_undo_entries(store: AnnotationStore) -> None:
    store.add(ruler())
    store.selected_id = store.annotations[0].id
    events = Recorder(store)
    loaded = [ruler(5), ellipse()]
    store.load(loaded)
    assert store.annotations == tuple(loaded)
    assert not store.can_undo and not store.can_redo
    assert events.changes == [tuple(loaded)]
    assert store.selected_id is None and events.selections == [None]
    with pytest.raises(ValueError, match="duplicate"):
        store.load([loaded[0], loaded[0]])


# ---------------------------------------------------------------------------- selection
def test_selection_signal_and_validation(store: AnnotationStore) -> None:
    a, b = ruler(), ellipse()
    store.add(a)
    store.add(b)
    events = Recorder(store)
    store.selected_id = a.id
    store.selected_id = a.id  # unchanged: no event
    store.selected_id = b.id
    store.selected_id = None
    assert events.selections == [a.id, b.id, None]
    assert store.selected is None
    with pytest.raises(KeyError):
        store.selected_id = "missing"


def test_removing_the_selected_annotation_clears_the_selection(store: AnnotationStore) -> None:
    a = ruler()
    store.add(a)
    store.selected_id = a.id
    seen_during_change: list[str | None] = []
    store.changed.connect(lambda _: seen_during_change.append(store.selected_id))
    events = Recorder(store)
    store.remove(a.id)
    assert store.selected_id is None and events.selections == [None]
    assert seen_during_change == [None]  # listeners of `changed` already see it cleared
    store.undo()
    assert store.annotations == (a,) and store.selected_id is None


def test_undoing_the_add_of_the_selected_annotation_clears_the_selection(
    store: AnnotationStore,
) -> None:
    a = ruler()
    store.add(a)
    store.selected_id = a.id
    store.undo()
    assert store.selected_id is None


# ---------------------------------------------------------------------------- UndoStack
def test_undo_stack_runs_do_on_push_and_keeps_failed_commands_out() -> None:
    log: list[str] = []
    stack = UndoStack(limit=2)
    stack.push(FunctionCommand("a", lambda: log.append("do a"), lambda: log.append("undo a")))

    def fail() -> None:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        stack.push(FunctionCommand("b", fail, lambda: log.append("undo b")))
    assert log == ["do a"] and len(stack) == 1 and stack.undo_text == "a"
    stack.undo()
    stack.redo()
    assert log == ["do a", "undo a", "do a"]
    stack.clear()
    assert not stack.can_undo and not stack.can_redo and stack.undo_text == ""
    with pytest.raises(ValueError):
        UndoStack(limit=0)


def test_listeners_of_changed_see_the_final_history(store: AnnotationStore) -> None:
    # A panel enables its Undo/Redo buttons from `changed`: the history must already be updated
    seen: list[tuple[bool, bool]] = []
    store.changed.connect(lambda _: seen.append((store.can_undo, store.can_redo)))
    store.add(ruler())
    store.undo()
    store.redo()
    assert seen == [(True, False), (False, True), (True, False)]


def test_a_failing_command_leaves_a_full_history_as_it_was() -> None:
    stack = UndoStack(limit=2)
    for name in "ab":
        stack.push(FunctionCommand(name, lambda: None, lambda: None))
    stack.undo()

    def fail() -> None:
        raise RuntimeError("boom")

    stack.push(FunctionCommand("c", lambda: None, lambda: None))  # fills it again: a, c
    with pytest.raises(RuntimeError):
        stack.push(FunctionCommand("d", fail, lambda: None))
    assert [c.text for c in stack._done] == ["a", "c"]
