"""DPS controllers: checkpoint features, kinds, training, tau replay and the on-disk registry.

The sampler's DPS driver needs three calls from here::

    controller = load_controller("my-gbdt")                       # artifacts.py
    check_compatible(controller, model_id=..., hidden_layer=..., hidden_size=...)
    p_enough = controller.predict_p_enough(batch)                   # base.Controller

Nothing in this package imports torch or catboost at import time; each kind loads its library
when it is trained or loaded.
"""
