"""Weight initialisation: schemes chosen by name, the policy that applies them to a model, and the
per-parameter record of what each got.

* [`convzoo.weight_init.schemes`][convzoo.weight_init.schemes]: the registered schemes (``INITS``) and [`resolve_init`][convzoo.weight_init.schemes.resolve_init];
* [`convzoo.weight_init.apply`][convzoo.weight_init.apply]: [`apply_init`][convzoo.weight_init.apply.apply_init] (which layers get which scheme, biases,
  norms, pretrained weights), [`apply_init_config`][convzoo.weight_init.apply.apply_init_config] (the ``configs/init/*.yaml`` form) and
  [`apply_data_init`][convzoo.weight_init.apply.apply_data_init] (the whitening stem);
* [`convzoo.weight_init.record`][convzoo.weight_init.record]: [`InitRecord`][convzoo.weight_init.record.InitRecord] / [`InitEntry`][convzoo.weight_init.record.InitEntry].

Examples:
    >>> from torch import nn
    >>> from convzoo.weight_init import apply_init_config
    >>> record = apply_init_config(nn.Linear(4, 2), {"scheme": "normal", "std": 0.02})
    >>> [(entry.name, entry.scheme) for entry in record]
    [('weight', 'normal'), ('bias', 'constant')]
"""

from convzoo.weight_init.apply import INIT_OPTIONS, apply_data_init, apply_init, apply_init_config
from convzoo.weight_init.record import PRETRAINED, UNCHANGED, InitEntry, InitRecord
from convzoo.weight_init.schemes import PYTORCH_DEFAULT, Initializer, InitSpec, SchemeSpec, resolve_init

__all__ = [
    "Initializer", "SchemeSpec", "InitSpec", "InitEntry", "InitRecord", "resolve_init", "apply_init",
    "apply_init_config", "apply_data_init", "INIT_OPTIONS", "PYTORCH_DEFAULT", "PRETRAINED", "UNCHANGED",
]
