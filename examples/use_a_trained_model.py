"""Use a trained cliplab model from Python: load it, embed images and texts, classify zero-shot,
measure image-text retrieval.

    cliplab train --max-steps 200 --logs logs --name tiny-run     # or any checkpoint you have
    python examples/use_a_trained_model.py logs/tiny-run --num-images 200

CHECKPOINT may be a bundle directory, a training checkpoint (<run>/checkpoints/step_XXXXXXX) or a
run directory (its latest checkpoint). The images are the first N of the Fashion-MNIST test split,
each paired with its generated caption. tests/test_examples.py runs this file, so it stays correct.
"""

import argparse

import torch

import cliplab
from cliplab.data import FASHION_MNIST_CLASSNAMES, FASHION_MNIST_TEMPLATES, FashionMnistDataset


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", help="bundle, training checkpoint or run directory")
    parser.add_argument("--num-images", type=int, default=100, help="Fashion-MNIST test images to use")
    args = parser.parse_args(argv)

    # model in eval mode; preprocess: PIL image -> [3, S, S]; tokenizer: list of N texts -> [N, T]
    model, preprocess, tokenizer = cliplab.load(args.checkpoint)

    test_set = FashionMnistDataset(split="test")
    samples = [test_set.read(index, epoch=0) for index in range(args.num_images)]
    images = torch.stack([preprocess(sample.image) for sample in samples])   # [N, 3, S, S]
    labels = torch.tensor([sample.label for sample in samples])              # [N]
    captions = [sample.caption for sample in samples]

    with torch.no_grad():
        image_features = model.encode_image(images, normalize=True)           # [N, E], unit rows
        text_features = model.encode_text(tokenizer(captions), normalize=True)  # [N, E]

    # zero-shot: one embedding per class (mean over prompt templates), the nearest class wins
    classifier = cliplab.zero_shot_classifier(model, tokenizer, FASHION_MNIST_CLASSNAMES,
                                              FASHION_MNIST_TEMPLATES)        # [C, E]
    logit_scale = model.logit_scale.detach().exp()
    probabilities = (logit_scale * image_features @ classifier.T).softmax(dim=1)  # [N, C]
    predicted = probabilities.argmax(dim=1)
    top1 = (predicted == labels).float().mean().item()
    print(f"zero-shot top-1 on {len(samples)} images: {top1:.4f}")
    for index in range(min(3, len(samples))):
        print(f"  image {index}: {FASHION_MNIST_CLASSNAMES[predicted[index]]!r} "
              f"(p={probabilities[index, predicted[index]]:.2f}), "
              f"true {FASHION_MNIST_CLASSNAMES[labels[index]]!r}")

    # retrieval: image i and caption i are a pair; ranks of partners among all N candidates
    metrics = cliplab.retrieval_metrics(image_features, text_features, logit_scale)
    for name, value in metrics.items():
        print(f"{name}: {value:.4f}")


if __name__ == "__main__":
    main()
