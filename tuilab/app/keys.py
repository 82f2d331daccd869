"""Every key of the lab in one table: the App's bindings, its footer, the help screen and the
command palette are all made from it, so none of them can drift from the others."""

from __future__ import annotations

from typing import NamedTuple

from textual.binding import Binding


class Key(NamedTuple):
    """One action and the keys that run it."""

    keys: str
    """The keys as the help screen shows them ("d / delete")."""
    action: str
    """The App action ("" for a row that only explains a key bound elsewhere)."""
    title: str
    """The command palette's name for it."""
    description: str
    bind: str = ""
    """Textual key names bound on the App, comma-separated ("d,delete"); "" when a widget
    binds the key itself (enter in the builder) or Textual does (ctrl+p)."""
    footer: str = ""
    """The footer's short label; "" keeps the key out of the footer."""


KEY_GROUPS: tuple[tuple[str, tuple[Key, ...]], ...] = (
    ("Build", (
        Key("a", "add_after", "Add block after",
            "add the palette's block after the selected node", "a", "Add"),
        Key("enter / click", "", "", "on a palette block: add it after the selected node"),
        Key("A", "add_into", "Add block into",
            "add the palette's block into the selected container", "A"),
        Key("i", "insert_before", "Insert block before",
            "insert the palette's block before the selected node", "i"),
        Key("K / shift+up", "move_up", "Move up",
            "move the selected node up among its siblings", "K"),
        Key("J / shift+down", "move_down", "Move down", "move the selected node down", "J"),
        Key(">", "indent", "Move into container",
            "move the selected node into the container just above it", "greater_than_sign"),
        Key("<", "outdent", "Move out of container",
            "move the selected node out of its container", "less_than_sign"),
        Key("d / delete", "remove", "Delete node", "remove the selected node", "d,delete",
            "Delete"),
        Key("D", "duplicate", "Duplicate node", "a copy with its own new weights, after it",
            "D"),
        Key("r", "rename", "Rename node",
            "rename the selected node (or the model, at the root)", "r"),
        Key("e / enter", "edit_args", "Edit arguments",
            "edit the selected block's arguments, in the header's line",
            "e", "Edit"),
        Key("m", "mark", "Mark node", "mark the selected node, to share it with s", "m"),
        Key("s", "share", "Share marked node",
            "use the marked node's module again after the selection (tied weights)", "s"),
        Key("z", "freeze", "Freeze / unfreeze",
            "toggle requires_grad of the selected node's parameters", "z"),
        Key("ctrl+z", "undo", "Undo", "undo the last edit", "ctrl+z", "Undo"),
        Key("ctrl+y", "redo", "Redo", "redo the edit undone last", "ctrl+y"),
        Key("/", "focus_search", "Search palette", "type to filter the palette's blocks",
            "slash"),
        Key("v", "toggle_inspector", "Inspector / model",
            "go to the inspector and back (under 110 columns it takes the model's place)", "v"),
        Key("ctrl+n", "set_input_shape", "Set input shape", "the input's shape, batch first",
            "ctrl+n"),
        Key("X", "choose_input", "Choose the input x",
            "type the input: torch.arange(9.).view(3, 3); forward uses it until changed", "X"),
    )),
    ("Modes", (
        Key("T", "toggle_training", "Train / eval mode", "model.train() or model.eval()", "T",
            "Train/eval"),
        Key("c", "device", "Device", "move the model to cpu, cuda:N or mps", "c"),
        Key("P", "precision", "Precision",
            "float32, float16, bfloat16 or float64, in the header's line", "P"),
    )),
    ("Runs (run panel)", (
        Key("f", "run_forward", "Forward pass", "one forward pass on the input x", "f"),
        Key("V", "values", "Values view",
            "the selection's tensor as PyTorch prints it: slice it, set it", "V"),
        Key("b", "run_backward", "Backward pass", "loss.backward() on a batch of the task",
            "b"),
        Key("g", "run_zero_grad", "zero_grad", "clear every parameter's .grad", "g"),
        Key("I", "run_init", "Initialise", "re-initialise the selected node's weights", "I"),
        Key("t", "run_train", "Train", "start a short training run in the background", "t"),
        Key("p", "run_pause", "Pause / resume", "pause or resume the training run", "p"),
        Key("x", "run_stop", "Stop run", "stop the training run", "x"),
        Key("k", "run_add_hook", "Add hook",
            "a forward, forward pre- or backward hook on the selected node", "k"),
        Key("H", "run_remove_hooks", "Remove hooks", "remove every hook added from the lab",
            "H"),
        Key("G", "run_grad_cam", "Grad-CAM", "heat map of a conv model's attention on a digit",
            "G"),
        Key("B", "run_boundary", "Decision regions", "the classes over the plane, for 2-D tasks",
            "B"),
        Key("L", "run_log_scale", "Log-scale loss", "switch the loss plot's y axis to log", "L"),
        Key("M", "run_toggle_maximize", "Maximise run panel", "give the run panel the screen",
            "M"),
    )),
    ("Lessons", (
        Key("o", "open_lesson", "Open lesson",
            "walk a seed text step by step (tuilab lessons lists them)", "o"),
        Key("n", "lesson_next", "Lesson: do / next step",
            "let the lab do the step's actions, or go on once its figure matches", "n"),
        Key("N", "lesson_previous", "Lesson: previous step", "back to the step before", "N"),
        Key("R", "lesson_restart", "Lesson: restart step",
            "the step's model, input and modes again (after leaving the path)", "R"),
    )),
    ("Files and views", (
        Key("ctrl+s", "save", "Save workspace", "save (asks for a name the first time)",
            "ctrl+s", "Save"),
        Key("S", "save_as", "Save workspace as", "save under a new name", "S"),
        Key("ctrl+o", "open_workspace", "Open workspace", "open a saved workspace .toml",
            "ctrl+o"),
        Key("l", "load_preset", "Load preset", "open one of the preset models", "l"),
        Key("w", "save_weights", "Save weights",
            "the selected node's state_dict (the root: the whole model) as safetensors", "w"),
        Key("W", "load_weights", "Load weights",
            "a .safetensors or .pt state_dict into the selected node; all or nothing", "W"),
        Key("y", "copy_last", "Copy last code line", "copy the code log's last line", "y"),
        Key("Y", "copy_all", "Copy code log",
            "copy the code log: a script that replays the session", "Y"),
        Key("E", "copy_export", "Copy exported source", "copy the model as standalone PyTorch",
            "E"),
        Key("? / f1", "help", "Help", "this list of keys", "question_mark,f1", "Help"),
        Key("ctrl+p", "command_palette", "Command palette", "search every action"),
        Key("q / ctrl+q", "quit", "Quit", "quit (asks when there are unsaved changes)", "q",
            "Quit"),
    )),
)


def app_bindings() -> list[Binding]:
    """The App's bindings, in the table's order (the footer keeps it)."""
    bindings = [Binding(key.bind, key.action, key.footer or key.title, show=bool(key.footer))
                for _, keys in KEY_GROUPS for key in keys if key.bind]
    # ctrl+q quits even while a widget that takes typing (an input) has focus
    bindings.append(Binding("ctrl+q", "quit", "Quit", show=False, priority=True))
    return bindings
