"""toto_eval.backbones"""
