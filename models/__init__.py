"""VEC's cloze networks."""
from models.selfcomplete import (SelfCompleteNet4, SelfCompleteNetFull, build_cloze_network,
                                 strip_data_parallel_prefix)
from models.stacked_cloze import StackedClozeNet, StackedSelfCompleteNet4, StackedSelfCompleteNetFull

__all__ = ["SelfCompleteNetFull", "SelfCompleteNet4", "build_cloze_network", "strip_data_parallel_prefix",
           "StackedClozeNet", "StackedSelfCompleteNetFull", "StackedSelfCompleteNet4"]
