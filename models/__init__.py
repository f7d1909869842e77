"""The project's networks: VEC's cloze U-Nets and the Cascade R-CNN detector. They import nothing from utils/."""
from models.cascade_rcnn import CascadeRCNN
from models.selfcomplete import (SelfCompleteNet4, SelfCompleteNetFull, build_cloze_network,
                                 strip_data_parallel_prefix)
from models.stacked_cloze import StackedClozeNet, StackedSelfCompleteNet4, StackedSelfCompleteNetFull

__all__ = ["SelfCompleteNetFull", "SelfCompleteNet4", "build_cloze_network", "strip_data_parallel_prefix",
           "CascadeRCNN", "StackedClozeNet", "StackedSelfCompleteNetFull", "StackedSelfCompleteNet4"]
