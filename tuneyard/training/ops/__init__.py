"""Operations on a model's weights that job types other than finetune are made of: folding a LoRA
adapter into its base (merge), growing a model (train) and contracting it (contract).

Plain functions over torch modules: no telemetry, files or specs, so a recipe composes them and a
test checks each on its own.
"""
