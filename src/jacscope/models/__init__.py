"""Model definitions of the paper's setting: the MLP, its loss and accuracy."""

from jacscope.models._cnn import cnn_apply as cnn_apply
from jacscope.models._cnn import init_cnn as init_cnn
from jacscope.models._loss import accuracy as accuracy
from jacscope.models._loss import classification_loss as classification_loss
from jacscope.models._loss import cross_entropy as cross_entropy
from jacscope.models._mlp import init_mlp as init_mlp
from jacscope.models._mlp import mlp_apply as mlp_apply
