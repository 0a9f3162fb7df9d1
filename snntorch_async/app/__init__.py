"""The application on top of the library: the ``snntorch-async`` command line and the demo.

* :mod:`~snntorch_async.app.cli`: argument parsing and the one error style (``main``);
* :mod:`~snntorch_async.app.commands`: the subcommands (``demo``, ``train``, ``evaluate``,
  ``export``, ``verify``);
* :mod:`~snntorch_async.app.recipe`: how a command-line checkpoint rebuilds its model and data;
* :mod:`~snntorch_async.app.zoo`: built-in architectures and users' model files;
* :mod:`~snntorch_async.app.demo`, :mod:`~snntorch_async.app.report`,
  :mod:`~snntorch_async.app.figures`, :mod:`~snntorch_async.app.lava`: the demo, its report and
  figures, and its Lava stage.

Nothing here is imported by the core package; this package imports nothing heavy at import time,
so ``snntorch-async --help`` answers without importing torch.
"""
