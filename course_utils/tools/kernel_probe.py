"""Fingerprints of what runs, shows and judges notebook cells, taken inside a kernel for the grader.

The grader's runner (``runner.py``, through ``kernel_checks``) evaluates ``state(...)`` in the kernel before
any cell runs (the baseline) and again before and after each graded test cell, as a ``user_expression``
(evaluated by the kernel itself, not through the input transformers a submission can register). Each entry names a
piece of machinery and the identity of the object behind it; an entry that differs from the baseline means the
submission replaced it: IPython's traceback display, input or AST transformers, the kernel's execute
handler, ``sys.excepthook``, a builtin, a method of ``nn.Module``, a function of ``course_utils``...

It runs in the submission's process, so a submission written to defeat this very probe can; the report keeps
the notebook for a human to read. Nothing here changes the kernel.
"""

from __future__ import annotations

import builtins
import contextlib
import json
import os
import sys

SHELL_METHODS = (
    "run_cell",
    "run_cell_async",
    "should_run_async",
    "transform_cell",
    "transform_ast",
    "run_ast_nodes",
    "run_code",
    "showtraceback",
    "_showtraceback",
    "showsyntaxerror",
    "showindentationerror",
    "get_exception_only",
    "user_expressions",
    "_format_user_obj",
    "_user_obj_error",
    "excepthook",
    "set_custom_exc",
    "CustomTB",
    "ev",
    "ex",
)
# Modules and classes whose functions and methods the tests rely on, fingerprinted when they are loaded.
MODULES = ("torch", "torch.nn", "torch.nn.functional", "torch.optim", "torchvision.models")
CLASSES = (
    "IPython.core.interactiveshell.InteractiveShell",
    "ipykernel.zmqshell.ZMQInteractiveShell",
    "ipykernel.ipkernel.IPythonKernel",
    "ipykernel.kernelbase.Kernel",
    "jupyter_client.session.Session",
    "IPython.core.inputtransformer2.TransformerManager",
    "IPython.core.ultratb.AutoFormattedTB",
    "IPython.core.ultratb.FormattedTB",
    "IPython.core.ultratb.VerboseTB",
    "IPython.core.ultratb.ListTB",
    "IPython.core.displayhook.DisplayHook",
    "IPython.core.events.EventManager",
    "ipykernel.iostream.OutStream",
    "torch.Tensor",
    "torch.nn.Module",
    "torch.nn.Parameter",
    "torch.nn.Linear",
    "torch.nn.Conv2d",
    "torch.nn.Sequential",
    "torch.nn.modules.batchnorm._BatchNorm",
    "torch.nn.BatchNorm2d",
    "torch.optim.Optimizer",
    "torch.optim.Adam",
    "torch.optim.SGD",
    "torch.utils.data.DataLoader",
    "torchvision.models.MobileNetV2",
    "torchvision.models.ResNet",
)


def _fid(obj, folders: tuple[str, ...] = ()) -> int:
    """Identity of a callable: of the function under a bound method, and under wrappers from ``folders``.

    torch wraps ``Optimizer.step`` on the class when the first optimizer is made (functools.wraps); a wrapper
    whose code lies in the installation is looked through, one written in the notebook is not.
    """
    function = getattr(obj, "__func__", obj)
    for _ in range(10):
        inner = getattr(function, "__wrapped__", None)
        if inner is None or not folders or not _trusted(function, folders):
            break
        function = getattr(inner, "__func__", inner)
    return id(function)


def _library_fid(obj, folders: tuple[str, ...]) -> int:
    """Like _fid, but 0 for Python code of the installation: libraries patch their own functions (torch.package
    replaces inspect.getfile, torch.optim wraps Optimizer.step); a function from the notebook is still seen."""
    return 0 if _trusted(obj, folders) else _fid(obj, folders)


def _resolve(dotted: str):
    """The object at ``module.attr.attr``, if its module is already loaded (never imports), else None."""
    parts = dotted.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        module = sys.modules.get(".".join(parts[:cut]))
        if module is not None:
            obj = module
            try:
                for name in parts[cut:]:
                    obj = getattr(obj, name)
            except AttributeError:
                return None
            return obj
    return None


def _trusted(obj, folders: tuple[str, ...]) -> bool:
    """True when a Python function's code lives in one of ``folders`` (the installation, not the notebook).

    A callable without code of its own (a builtin, a class, functools.partial around anything) is never trusted:
    it is compared by identity.
    """
    code = getattr(getattr(obj, "__func__", obj), "__code__", None)
    if code is None:
        return False
    filename = code.co_filename
    filename = os.path.realpath(filename) if filename and not filename.startswith("<") else filename
    return any(filename.startswith(folder + os.sep) for folder in folders)


def _shell_entries(out: dict, ip, folders: tuple[str, ...]) -> None:
    for name in SHELL_METHODS:
        out[f"shell.{name}"] = _fid(getattr(ip, name, None))
    for name, value in vars(ip).items():
        if callable(value) and hasattr(type(ip), name) and not isinstance(value, type):
            out[f"shell-instance.{name}"] = _fid(value)
    out["shell.custom_exceptions"] = repr(ip.custom_exceptions)
    out["shell.input_transformers_post"] = [_fid(f) for f in ip.input_transformers_post]
    manager = ip.input_transformer_manager
    out["shell.input_transformer_manager"] = id(manager)
    for name in ("cleanup_transforms", "line_transforms", "token_transformers"):
        out[f"shell.input_transformer_manager.{name}"] = [_fid(f) for f in getattr(manager, name, [])]
    out["shell.ast_transformers"] = [id(t) for t in ip.ast_transformers]
    for name in ("displayhook", "display_pub", "display_formatter", "InteractiveTB", "SyntaxTB", "events"):
        helper = getattr(ip, name, None)
        out[f"shell.{name}"] = id(helper)
        for key, value in vars(helper).items() if hasattr(helper, "__dict__") else ():
            if callable(value) and hasattr(type(helper), key) and not isinstance(value, type):
                out[f"shell.{name}-instance.{key}"] = _fid(value)
    for event, callbacks in ip.events.callbacks.items():  # extensions (autoreload...) are installed code: fine
        out[f"events.{event}"] = [_fid(c) for c in callbacks if not _trusted(c, folders)]
    kernel = getattr(ip, "kernel", None)
    if kernel is not None:
        for name in ("do_execute", "execute_request", "send_response", "_publish_execute_input"):
            out[f"kernel.{name}"] = _fid(getattr(kernel, name, None))
        for name, value in vars(kernel).items():
            if callable(value) and hasattr(type(kernel), name) and not isinstance(value, type):
                out[f"kernel-instance.{name}"] = _fid(value)
        out["kernel.shell_handlers.execute_request"] = _fid(kernel.shell_handlers.get("execute_request"))
        session = getattr(kernel, "session", None)
        out["kernel.session.send"] = _fid(getattr(session, "send", None))
        out["kernel.session.class"] = id(type(session))
    startup = getattr(getattr(ip, "profile_dir", None), "startup_dir", None)
    if startup and os.path.isdir(startup):
        out["ipython.startup-files"] = sorted(os.listdir(startup))


def _bindings(out: dict, namespace: dict, bindings: dict[str, str]) -> None:
    """Whether each name the instructor's cells import ('checks', 'torch', 'evaluate'...) is still that object."""
    for name, target in bindings.items():
        if name not in namespace:
            out[f"binding.{name}"] = "missing"
            continue
        module_name, _, attribute = target.partition(":")
        module = sys.modules.get(module_name)
        if module is None:
            out[f"binding.{name}"] = "unknown"
            continue
        expected = getattr(module, attribute, None) if attribute else module
        out[f"binding.{name}"] = "ok" if namespace[name] is expected else f"is a {type(namespace[name]).__name__}"


def _defined(out: dict, namespace: dict, names: tuple[str, ...]) -> None:
    """sha256 of the source of each helper function the instructor's cells define (a redefinition shows)."""
    import hashlib
    import inspect

    for name in names:
        value = namespace.get(name)
        if value is None:
            out[f"defined.{name}"] = "missing"
            continue
        try:
            lines = inspect.getsource(value).strip("\n").split("\n")
        except (OSError, TypeError):
            out[f"defined.{name}"] = f"a {type(value).__name__} without source"
            continue
        out[f"defined.{name}"] = hashlib.sha256("\n".join(line.rstrip() for line in lines).encode()).hexdigest()


def state(
    package_dir: str,
    preload: tuple[str, ...] = (),
    bindings: dict[str, str] | None = None,
    defined: tuple[str, ...] = (),
) -> str:
    """JSON {name: fingerprint} of the kernel's machinery; imports ``preload`` first (for the baseline).

    ``bindings`` maps names of the notebook's namespace to what the instructor's cells bound them to
    ('module' or 'module:attribute'); each is reported 'ok', 'missing' or what it is instead.
    """
    import importlib

    for name in preload:
        with contextlib.suppress(Exception):  # a module that fails to import is the notebook's business
            importlib.import_module(name)
    folders = tuple(
        os.path.realpath(p)
        for p in {package_dir, sys.prefix, sys.base_prefix, sys.exec_prefix, os.path.dirname(os.__file__)}
        if p
    )
    out: dict = {}
    try:
        from IPython import get_ipython

        ip = get_ipython()
        if ip is not None:
            _shell_entries(out, ip, folders)
            _bindings(out, ip.user_ns, bindings or {})
            _defined(out, ip.user_ns, defined)
    except Exception as exc:  # noqa: BLE001 - reported, then judged by the grader
        out["probe-error.shell"] = f"{type(exc).__name__}: {exc}"[:200]
    for name in ("excepthook", "displayhook", "breakpointhook"):
        out[f"sys.{name}"] = _fid(getattr(sys, name, None))
    out["sys.gettrace"] = repr(sys.gettrace())[:80]
    out["sys.getprofile"] = repr(sys.getprofile())[:80]
    out["sys.meta_path"] = [id(finder) for finder in sys.meta_path]
    out["sys.path_hooks"] = [id(hook) for hook in sys.path_hooks]
    for name, value in vars(builtins).items():
        if not name.startswith("_") or name in ("__import__", "__build_class__"):
            out[f"builtins.{name}"] = id(value)
    for module_name in MODULES:
        module = sys.modules.get(module_name)
        if module is not None:
            for name, value in list(vars(module).items()):
                if callable(value) and not name.startswith("__"):
                    out[f"module.{module_name}.{name}"] = _library_fid(value, folders)
    _classes(out, folders)
    _course_modules(out, os.path.realpath(package_dir), folders)
    return json.dumps(out, separators=(",", ":"))


def _classes(out: dict, folders: tuple[str, ...]) -> None:
    """The methods of the watched classes (CLASSES), into ``out``."""
    for dotted in CLASSES:
        cls = _resolve(dotted)
        library = dotted.startswith(("torch", "torchvision"))
        if isinstance(cls, type):
            for name, value in list(vars(cls).items()):
                if name not in ("__dict__", "__weakref__", "__doc__", "__annotations__", "__abstractmethods__"):
                    out[f"class.{dotted}.{name}"] = _library_fid(value, folders) if library else _fid(value, folders)


def _course_modules(out: dict, package: str, folders: tuple[str, ...]) -> None:
    """Where each loaded course_utils module came from, its functions, and any defined outside ``package``."""
    for module_name, module in list(sys.modules.items()):
        if module is None or not (module_name == "course_utils" or module_name.startswith("course_utils.")):
            continue
        filename = getattr(module, "__file__", None) or ""
        out[f"file.{module_name}"] = os.path.realpath(filename) if filename else ""
        for name, value in list(vars(module).items()):
            if callable(value) and not name.startswith("__"):
                out[f"module.{module_name}.{name}"] = id(value)
                code = getattr(value, "__code__", None)
                outside = code is not None and not os.path.realpath(code.co_filename).startswith(package + os.sep)
                if outside and not _trusted(value, folders):
                    out[f"foreign.{module_name}.{name}"] = code.co_filename
