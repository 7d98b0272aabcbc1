"""Train, validate or test a translation model: a LightningCLI driven by configs/*.yaml.

python scripts/train.py fit --config configs/default.yaml
python scripts/train.py test --config configs/default.yaml --ckpt_path runs/.../best.ckpt
python scripts/train.py fit --print_config
"""

from seq2seq.cli import train_main

if __name__ == "__main__":
    train_main()
