"""The real ``nn.Module`` classes behind tuilab's palette.

Kept light on purpose: nothing is imported here, so ``import tuilab.core.blocks`` costs nothing
until the catalog asks for a class by its dotted path.

- ``seed``: the seed texts' own modules, written the way the seeds write them.
- ``composite``: d2l-style composite blocks (residual, inception, TCN, transformer encoder).
- ``utility``: small glue modules that let a model stay a plain ``nn.Sequential``.
- ``containers``: containers whose ``forward`` rule the palette states.

Only torch and the standard library are used: this is engine code, never UI code.
"""
