"""The run's components built from their config sections, in the order `Trainer.__init__` builds
them:

    model_plan.py    the overrides and the image normalisation a fresh model gets (`plan_model`)
    model.py         the model: created, or read with --pretrained; towers locked (`build_training_model`)
    tokenizer.py     the run's tokenizer: given, the checkpoint's, or trained on the captions
    objectives.py    the x-clip objectives and the module that trains them with the model
    data.py          this rank's training batches, epoch after epoch (`TrainData`)
"""
