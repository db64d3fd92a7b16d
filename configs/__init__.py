"""JARL's run configs, one module per recipe; `get_config(arg)` in each.

    python -m jarl.main --config=configs/pretrain.py:demo --workdir=/tmp/jarl_demo

absl's config flag loads a file by path; the modules import one another as the `configs`
package (`from configs import common, pretrain`), so run from the repository root or
install the checkout (`pip install -e .`). In Python: `configs.pretrain.get_config("tiny")`.
Sizes and the `<variant>,<key>=<value>` argument: configs/common.py.
"""
