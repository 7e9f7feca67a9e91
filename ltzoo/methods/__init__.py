"""The methods floor: what a long-tail method changes, as pure functions and modules that import no loop.

- `ltzoo.methods.losses`: the long-tail losses, one file per family, behind `create_loss`;
- `ltzoo.methods.heads`: classifier heads fitted on cached features (cRT, LWS, tau-norm, GML, NCM, ...);
- `ltzoo.methods.merge`: weight averaging (BTM's merge, greedy soups) and BN re-estimation;
- `ltzoo.methods.shifted_bn`: MiSLAS's shifted batch-norm statistics;
- `ltzoo.methods.context_shift`: CSA's two-branch model, Grad-CAM masks, context bank and shift;
- `ltzoo.methods.adapters`: parameter-efficient fine-tuning over peft.
"""
