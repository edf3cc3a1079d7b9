"""Prompt Guard: an HF sequence classifier scoring a message as benign, injection or jailbreak."""

from __future__ import annotations

from pathlib import Path
from typing import Any

LABELS = ("BENIGN", "INJECTION", "JAILBREAK")


class PromptGuardClassifier:
    def __init__(self, model_dir: str, device: str = "cpu"):
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(Path(model_dir))
        self.model = AutoModelForSequenceClassification.from_pretrained(Path(model_dir)).to(device).eval()
        self.device = device
        id2label = {int(k): v.upper() for k, v in self.model.config.id2label.items()}
        self.index = {label: i for i, label in id2label.items()}
        missing = [label for label in LABELS if label not in self.index]
        if missing:
            raise ValueError(f"{model_dir}: classifier labels must include {LABELS}, missing {missing}")

    def scores(self, text: str) -> dict[str, float]:
        enc = self.tokenizer(text, return_tensors="pt", truncation=True, max_length=512).to(self.device)
        with self.torch.inference_mode():
            probs = self.model(**enc).logits.float().softmax(-1)[0]
        return {label: float(probs[self.index[label]]) for label in LABELS}


def is_violation(scores: dict[str, Any], mode: str, threshold: float) -> tuple[bool, float]:
    """jailbreak mode: P(jailbreak); injection mode: P(injection) + P(jailbreak) (a jailbreak is also an injection)."""
    score = scores["JAILBREAK"] if mode == "jailbreak" else scores["INJECTION"] + scores["JAILBREAK"]
    return score >= threshold, score
