import json
import time

import peft
import timm
import torch
import torch.nn.functional as F

d = torch.device("cuda")


def run(a, m, b, ev=False):
    torch.manual_seed(0)
    n = timm.create_model(a, num_classes=1000)
    if m == "lora":
        n = peft.get_peft_model(
            n,
            peft.LoraConfig(
                r=8,
                lora_alpha=16,
                target_modules=r".*blocks\.\d+\.(attn\.(qkv|proj)|mlp\.(fc1|fc2))",
                modules_to_save=["head"],
            ),
        )
    if m in ("bias", "head"):
        for k, p in n.named_parameters():
            p.requires_grad = k.startswith("head.") or (m == "bias" and k.endswith("bias"))
    n = n.to(d)
    x8 = torch.randint(0, 256, (b, 3, 224, 224), dtype=torch.uint8, device=d)
    y = torch.randint(0, 1000, (b,), device=d)
    torch.cuda.reset_peak_memory_stats()
    o = torch.optim.AdamW([p for p in n.parameters() if p.requires_grad], lr=1e-4)
    for i in range(25):
        if i == 5:
            torch.cuda.synchronize()
            t = time.perf_counter()
        x = (x8.float() / 255 - 0.5) / 0.5
        if ev:
            with torch.no_grad():
                n.eval()(x)
            continue
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = F.cross_entropy(n(x), y)
        o.zero_grad(set_to_none=True)
        loss.backward()
        o.step()
    torch.cuda.synchronize()
    s = time.perf_counter() - t
    print(
        json.dumps(
            dict(
                arch=a,
                peft="eval fp32" if ev else m,
                batch=b,
                images_per_s=round(b * 20 / s),
                peak_gib=round(torch.cuda.max_memory_allocated() / 2**30, 2),
                trainable=sum(p.numel() for p in n.parameters() if p.requires_grad) * (not ev),
            )
        ),
        flush=True,
    )


print(
    json.dumps(
        dict(torch=torch.__version__, timm=timm.__version__, peft=peft.__version__, gpu=torch.cuda.get_device_name(0))
    )
)
for a in ["vit_base_patch16_clip_224", "vit_base_patch16_224"]:
    for m in ["none", "lora", "bias", "head"]:
        for b in [64, 256]:
            run(a, m, b)
    run(a, "none", 512, True)
