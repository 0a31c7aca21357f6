"""The console commands: ``painter-predict``, ``painter-page``, ``painter-compare``, ``painter-register``,
``painter-trial``, ``painter-preset``.

Each module reads its arguments, then calls the library: the heavy imports (TensorFlow,
MLflow) happen only after the arguments are read, so ``--help`` and a mistyped flag answer
at once. No DVC stage imports anything here.
"""
