r"""Convert torchvision ResNet18 ImageNet weights to a torch-free .npz (run once).

Run on any machine with torch + torchvision; the .npz is then read without torch
by ``lazy_hasty.models.torch_import.load_state_dict_arrays``:

    python scripts/convert_torchvision_resnet18.py --out resnet18_imagenet.npz
    python scripts/convert_torchvision_resnet18.py --pth resnet18-f37072fd.pth \
        --out resnet18_imagenet.npz

Without --pth, ``torchvision.models.resnet18(weights="IMAGENET1K_V1")`` is used,
which downloads the weights on that machine. Keys and layouts stay torchvision's.
"""

import argparse

import numpy as np
import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="output .npz path")
    parser.add_argument("--pth", help="local torchvision resnet18 state_dict (.pth/.pt)")
    args = parser.parse_args()
    if args.pth:
        state = torch.load(args.pth, map_location="cpu", weights_only=True)
    else:
        import torchvision

        state = torchvision.models.resnet18(weights="IMAGENET1K_V1").state_dict()
    arrays = {k: v.detach().cpu().numpy() for k, v in state.items()}
    np.savez(args.out, **arrays)
    print(f"wrote {len(arrays)} arrays to {args.out}")


if __name__ == "__main__":
    main()
