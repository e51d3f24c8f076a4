"""toto_eval.pretrain"""
